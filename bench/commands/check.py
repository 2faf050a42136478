"""``bench check``: the regression gate. Compares the latest results with a committed baseline JSON.

For each baseline entry (dataset, preset, model, kd; averaged over the entry's seeds, latest run per seed): params
must match exactly and GMACs to 1e-6 relative; Dice must not drop by more than the dice tolerance and HD95 must not
rise by more than the hd95 tolerance (mm); latency is compared only with --latency-ratio R (now / baseline <= R).
Exit status: 0 all hold, 1 on any regression, 2 on a usage error or when a baseline entry has no matching run.
--update writes the baseline from the current results instead (file format: see bench/regression.py).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="fail (exit 1) when results regress against a baseline JSON",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", required=True, metavar="FILE", help="baseline JSON, e.g. results/baselines/smoke.json")
    p.add_argument("--results", default="results", metavar="DIR", help="results store directory (default: results)")
    p.add_argument("--tolerance", metavar="LIST",
                   help="allowed drop in Dice / rise in HD95 (mm), e.g. dice=0.01,hd95=1.0 (default: the baseline's "
                   "hints, else dice=0.01,hd95=1.0)")
    p.add_argument("--latency-ratio", type=float, metavar="R",
                   help="also fail when median latency now / baseline > R on the same device (default: not checked)")
    p.add_argument("--update", action="store_true", help="write the baseline from the current results and exit")
    p.set_defaults(func=run)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from bench import regression
    from bench.errors import BenchError
    from bench.store import ResultsStore

    override = regression.parse_tolerance(args.tolerance) if args.tolerance else {}
    if args.latency_ratio is not None and not args.latency_ratio > 0:
        raise BenchError(f"--latency-ratio must be a positive number, got {args.latency_ratio}")
    baseline_path = Path(args.baseline)
    baseline = None if args.update else regression.load_baseline(baseline_path)
    results = Path(args.results)
    if not results.is_dir():
        raise BenchError(f"results store {results} does not exist; run `bench run` first or pass --results DIR")
    summaries = ResultsStore(results).summaries()
    if not summaries:
        raise BenchError(f"results store {results} has no complete runs (no runs/*/summary.json)")

    if args.update:
        return _update(baseline_path, summaries, override)

    tolerance = regression.effective_tolerance(baseline, override)
    result = regression.compare(baseline, summaries, tolerance, args.latency_ratio)
    rows = [[r.key, r.metric, _cell(r.baseline), _cell(r.now), r.delta, r.allowed, r.status] for r in result.rows]
    print(tabulate(rows, ["key", "metric", "baseline", "now", "delta", "allowed", "status"], disable_numparse=True))
    if result.not_in_baseline:
        print(f"\nnot in the baseline (not checked; --update adds them): {', '.join(result.not_in_baseline)}")
    if result.missing:
        raise BenchError(f"no results for baseline entries: {'; '.join(result.missing)} (in {results})")
    failed = result.regressions
    if failed:
        print(f"\nFAIL: {len(failed)} regression(s) against {baseline_path}: "
              + ", ".join(f"{r.key} {r.metric}" for r in failed))
        return 1
    print(f"\nOK: {len(result.rows)} checks against {baseline_path} hold")
    return 0


def _torch_version(summaries: list[dict]) -> str | None:
    """The torch version(s) the runs recorded, else the installed one."""
    recorded = sorted({str(s["torch"]) for s in summaries if s.get("torch")})
    if recorded:
        return ", ".join(recorded)
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return importlib.metadata.version("torch")
    return None


def _update(path: Path, summaries: list[dict], override: dict[str, float]) -> int:
    from bench import regression
    from bench.errors import BenchError

    hints: dict[str, float] = {}
    if path.exists():
        with contextlib.suppress(BenchError):  # an unreadable old baseline is exactly what --update replaces
            hints = regression.effective_tolerance(regression.load_baseline(path), {})
    baseline = regression.build_baseline(summaries, {**hints, **override}, _torch_version(summaries))
    regression.write_baseline(path, baseline)
    for entry in baseline["entries"]:
        print(f"{regression.key_text(entry)}: seeds {entry['seeds']}, "
              + ", ".join(f"{k}={_cell(v)}" for k, v in entry["metrics"].items()))
    print(f"wrote {len(baseline['entries'])} entries to {path}")
    return 0
