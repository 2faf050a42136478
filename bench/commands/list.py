"""``bench list``: registered models and KD methods with their one-line descriptions."""

from __future__ import annotations

import argparse

from tabulate import tabulate

# Descriptions wrap so that a line stays within about 100 characters (a split terminal, a code review pane).
MODEL_DESCRIPTION_WIDTH = 55
KD_DESCRIPTION_WIDTH = 86


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list registered models and KD methods", description=__doc__)
    p.add_argument("--pattern", default="*", help="shell-style wildcard on names (default: *)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import kd_methods
    import models

    rows = []
    for name in models.available_models(args.pattern):
        info = models.model_info(name)
        patch = "x".join(map(str, info.default_patch))
        stride = "x".join(map(str, info.stride))
        rows.append([name, patch, stride, info.description])
    print(tabulate(rows, headers=["model", "default patch", "stride", "description"],
                   maxcolwidths=[None, None, None, MODEL_DESCRIPTION_WIDTH]))  # fmt: skip
    print()
    kd_rows = [
        [name, kd_methods.kd_method_info(name).description] for name in kd_methods.available_kd_methods(args.pattern)
    ]
    print(tabulate(kd_rows, headers=["KD method", "description"], maxcolwidths=[None, KD_DESCRIPTION_WIDTH]))
    return 0
