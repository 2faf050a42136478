"""``bench list``: registered models and KD methods with their one-line descriptions; ``--model NAME`` and
``--kd NAME`` show one entry's arguments (default, the paper's value, meaning), which `bench run` sets with the
component syntax, e.g. ``--kd ca:weight=0.1`` or ``--models nnunet:base_channels=16``."""

from __future__ import annotations

import argparse

from tabulate import tabulate

# Descriptions wrap so that a line stays within about 100 characters (a split terminal, a code review pane).
MODEL_DESCRIPTION_WIDTH = 55
KD_DESCRIPTION_WIDTH = 86
ARGUMENT_HELP_WIDTH = 56


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list registered models and KD methods, or one's arguments", description=__doc__)
    p.add_argument("--pattern", default="*", help="shell-style wildcard on names (default: *)")
    p.add_argument("--model", metavar="NAME", help="show the arguments of this model")
    p.add_argument("--kd", metavar="NAME", help="show the arguments of this KD method")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.model or args.kd:
        for kind, name in (("model", args.model), ("kd", args.kd)):
            if name:
                print(argument_table(kind, name))
        return 0
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
    print("\nArguments of one: bench list --model NAME, bench list --kd NAME")
    return 0


def argument_table(kind: str, name: str) -> str:
    """A model's or KD method's description and its arguments as a table; BenchError for an unknown name."""
    import kd_methods
    import models
    from bench.components.factory_args import arguments
    from bench.errors import BenchError

    try:
        info = models.model_info(name) if kind == "model" else kd_methods.kd_method_info(name)
    except (models.UnknownModelError, kd_methods.UnknownKDMethodError) as err:
        raise BenchError(f"--{kind}: {err}") from None
    rows = [[a.name, a.default_text, a.paper or "", a.help] for a in arguments(kind, name)]
    option = "--models" if kind == "model" else "--kd"
    shown = next((a for a in arguments(kind, name) if a.default is not None), None)
    example = f"{option} {name}:{shown.name}={shown.default_text}" if shown else f"{option} {name}"
    table = tabulate(rows, headers=["argument", "default", "paper", "meaning"], disable_numparse=True,
                     maxcolwidths=[None, 24, 16, ARGUMENT_HELP_WIDTH])  # fmt: skip
    return f"{name}: {info.description}\nreference: {info.reference}\n\n{table}\n\nset with: {example}"
