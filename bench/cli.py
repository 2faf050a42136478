"""The ``bench`` command line. Each module in ``bench.commands`` adds one sub-command."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import traceback

import bench.commands
from bench import __version__
from bench.errors import BenchError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench",
        description="Benchmark lightweight 3D segmentation networks and knowledge-distillation methods: "
        "profile, train, evaluate, report and guard against regressions.",
        epilog="Typical use: bench run --models lcovnet,unet3d --kd ca,ms; bench report; "
        "bench check --baseline results/baselines/smoke.json",
    )
    parser.add_argument("--version", action="version", version=f"segkd-bench {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in sorted(pkgutil.iter_modules(bench.commands.__path__), key=lambda m: m.name):
        if not module.name.startswith("_"):
            importlib.import_module(f"bench.commands.{module.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BenchError as err:
        if args.debug:
            traceback.print_exc()
        print(f"bench {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"bench {args.command}: interrupted", file=sys.stderr)
        return 130
