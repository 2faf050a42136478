"""``bench check``: the regression gate. Compares the latest results with a committed baseline JSON.

Exact checks (hold on any machine): params equal, GMACs to 1e-6 relative, and the losses of each run's first
training step to 1e-4 relative (they catch a changed network, loss term or label mapping without training noise).
Statistical checks (trained accuracy): Dice may not drop, and HD95 may not rise, by more than the entry's tolerance,
which the baseline derives from measured noise: tolerance = max(floor, 4 x spread), spread being the standard
deviation of that entry over the runs the baseline was written from (seeds and CPU settings). Each row says why it
passed or failed ("Dice 0.5710 vs baseline 0.5750 ± 0.0120 (...): within noise"). Latency is informational unless
--latency-ratio R is given (then now / baseline <= R on the same device).

Exit status: 0 all hold, 1 on any regression, 2 on a usage error or when a baseline entry has no matching run.

--update writes the baseline from every complete run in the given results stores instead: pass several --results
(e.g. one per seed set or CPU setting) so that the spread is measured (file format: see bench/regression.py).
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
    p.add_argument("--results", action="append", metavar="DIR",
                   help="results store directory (default: results); repeat it to pool several stores, e.g. the noise "
                   "runs of other seeds or CPU settings for --update")
    p.add_argument("--tolerance", metavar="LIST",
                   help="override the allowed drop in Dice / rise in HD95 (mm) of every entry, e.g. dice=0.02,hd95=3 "
                   "(default: each entry's tolerance derived from its measured noise)")
    p.add_argument("--latency-ratio", type=float, metavar="R",
                   help="also fail when median latency now / baseline > R on the same device (default: not checked)")
    p.add_argument("--update", action="store_true", help="write the baseline from the current results and exit")
    p.set_defaults(func=run)


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
    stores = [Path(p) for p in args.results or ["results"]]
    summaries = []
    for results in stores:
        if not results.is_dir():
            raise BenchError(f"results store {results} does not exist; run `bench run` first or pass --results DIR")
        found = ResultsStore(results).summaries()
        if not found:
            raise BenchError(f"results store {results} has no complete runs (no runs/*/summary.json)")
        summaries.extend(found)

    if args.update:
        return _update(baseline_path, summaries, override)

    result = regression.compare(baseline, summaries, override, args.latency_ratio)
    rows = [[r.key, r.metric, r.status, r.verdict] for r in result.rows]
    print(tabulate(rows, ["entry", "check", "status", "why"], disable_numparse=True))
    if result.not_in_baseline:
        print(f"\nnot in the baseline (not checked; --update adds them): {', '.join(result.not_in_baseline)}")
    where = ", ".join(map(str, stores))
    if result.missing:
        raise BenchError(f"no results for baseline entries: {'; '.join(result.missing)} (in {where})")
    failed = result.regressions
    if failed:
        print(f"\nFAIL: {len(failed)} regression(s) against {baseline_path}:")
        for r in failed:
            print(f"  {r.key} {r.metric}: {r.verdict}")
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

    baseline = regression.build_baseline(summaries, override, _torch_version(summaries))
    regression.write_baseline(path, baseline)
    for entry in baseline["entries"]:
        stats = ", ".join(_stat_text(name, stat) for name, stat in entry["statistical"].items())
        print(f"{regression.key_text(entry)}: {stats}")
    print(f"wrote {len(baseline['entries'])} entries to {path}")
    return 0


def _stat_text(name: str, stat: dict[str, Any]) -> str:
    spread = "-" if stat["spread"] is None else f"{stat['spread']:.3g}"
    return f"{name} {stat['value']:.4g} ± {stat['tolerance']:.3g} (spread {spread}, n={stat['samples']})"
