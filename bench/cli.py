"""The ``bench`` command line. Each module in ``bench.commands`` adds one sub-command.

This is the one place where errors become exit codes (see ``bench.errors`` for the policy and the codes): every
error type of the library is reported as one line, ``bench: COMMAND: error: ...``, without a traceback unless
``--debug``; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import traceback

import bench.commands
from bench import __version__, console
from bench.errors import (
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_STDOUT_CLOSED,
    BenchError,
    disk_full_error,
    is_disk_full,
)


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
    chatter = parser.add_mutually_exclusive_group()
    chatter.add_argument("-v", "--verbose", action="store_true", help="also show details (debug messages) on stderr")
    chatter.add_argument("-q", "--quiet", action="store_true",
                         help="no progress and no notes: only warnings and errors on stderr, the result on stdout "
                         "(without -q/-v: the level SEGKD_VERBOSITY names, quiet, normal or verbose)")  # fmt: skip
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
    console.configure(console.Verbosity.VERBOSE if args.verbose else console.Verbosity.QUIET if args.quiet else None)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, so that a reader gone early is seen below, not at the interpreter's exit
        return code
    except BrokenPipeError:
        # The reader of stdout went away (`bench list | head -1`): stop quietly, like a Unix tool on SIGPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the final flush must not fail again
        return EXIT_STDOUT_CLOSED
    except KeyboardInterrupt:
        console.error(f"bench {args.command}: interrupted")
        return EXIT_INTERRUPTED
    except Exception as err:
        known = user_error(err)
        if known is None:
            raise
        if args.debug:
            traceback.print_exc()
        message = " ".join(str(known).split())  # one line, whatever the library put in it
        console.error(f"bench {args.command}: error: {message}")
        return known.exit_code


def user_error(err: Exception) -> BenchError | None:
    """``err`` as a :class:`BenchError` when it is one of the library's error types, else None (a bug)."""
    if isinstance(err, BenchError):
        return err
    if is_disk_full(err):
        return disk_full_error(getattr(err, "filename", None))
    # The model and KD layers cannot import bench; their error types are looked up only when they were loaded,
    # which keeps `bench --help` free of torch.
    layer_errors = [
        getattr(sys.modules[name], attr)
        for name, attrs in (
            ("models", ("ModelError", "UnknownModelError")),
            ("kd_methods", ("KDMethodError", "UnknownKDMethodError")),
        )
        if name in sys.modules
        for attr in attrs
    ]
    if layer_errors and isinstance(err, tuple(layer_errors)):
        wrapped = BenchError(str(err))
        wrapped.exit_code = EXIT_INPUT
        return wrapped
    return None
