"""``bench check``: the regression gate. Compares the latest results with a committed baseline JSON.

Exact checks (hold on any machine): params equal, GMACs to 1e-6 relative, and each run's first training step to
1e-4 relative: its losses, the norm of the gradient the KD term gives the student (0 when the term is detached) and
the number of parameters the optimiser updates (a KD method's adapters included). They catch a changed network,
loss term, label mapping or optimiser without training noise; a KD run's values depend on the trained teacher and
get wider tolerances.
When the baseline has a reference checkpoint (written with --update --reference RUN_ID), it is evaluated on the
built-in test cases, and every case's per-organ Dice and HD95 must equal the committed ones to 1e-6: an exact check
of preprocessing, inference and metrics.

Statistical checks (trained accuracy): Dice may not drop, and HD95 may not rise, by more than the entry's
tolerance, which the baseline derives from measured noise: tolerance = max(floor, 4 x spread), spread being the
standard deviation of that entry over the runs the baseline was written from (seeds and CPU settings). A KD
entry's gain (its Dice minus the same student's without KD, paired by seed) may not shrink by more than its own
tolerance: a KD method that stops transferring anything fails here. Each row says why it passed or failed
("Dice 0.5710 vs baseline 0.5750 ± 0.0120 (...): within noise"). Latency is informational
unless --latency-ratio R is given (then now / baseline <= R on the same device).

Exit status: 0 all hold, 1 on any regression, 2 on a usage error, when a baseline entry has no matching run, or
when the baseline checks nothing (no entries, an entry without a check) or holds a value of the wrong type. The
last lines say how many checks of each kind ran (exact, statistical, KD gain, reference, latency).

--update writes the baseline from every complete run in the given results stores instead: pass several --results
(e.g. one per seed set or CPU setting) so that the spread is measured (file format: see bench/regression.py).
--update --pool adds the given runs to the existing baseline as further noise samples (pooled exactly from each
entry's stored mean, spread and count), e.g. grids trained on another CPU that the committed spread did not cover.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.run_summary import RunSummary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="fail (exit 1) when results regress against a baseline JSON",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--baseline", required=True, metavar="FILE", help="baseline JSON, e.g. results/baselines/smoke.json")
    p.add_argument(
        "--results",
        action="append",
        metavar="DIR",
        help="results store directory (default: results); repeat it to pool several stores, e.g. the noise "
        "runs of other seeds or CPU settings for --update",
    )
    p.add_argument(
        "--tolerance",
        metavar="LIST",
        help="override the allowed drop in Dice / rise in HD95 (mm) / drop in KD gain of every entry, e.g. "
        "dice=0.02,hd95=3,gain=0.05 "
        "(default: each entry's tolerance derived from its measured noise)",
    )
    p.add_argument(
        "--latency-ratio",
        type=float,
        metavar="R",
        help="also fail when median latency now / baseline > R on the same device (default: not checked)",
    )
    p.add_argument("--update", action="store_true", help="write the baseline from the current results and exit")
    p.add_argument(
        "--pool",
        action="store_true",
        help="with --update: add the results to the existing baseline as further noise samples (e.g. grids from "
        "another CPU) instead of replacing it; its reference checkpoint is kept",
    )
    p.add_argument(
        "--reference",
        metavar="RUN",
        help="with --update: commit this run's weights (a run id in the --results stores, or a run folder; "
        "a complete no-KD run) as the reference checkpoint, saved beside the baseline as "
        "<baseline>.reference.pt",
    )
    p.add_argument(
        "--reference-data",
        metavar="DIR",
        help="with --reference: the data set the run was trained on (default: the built-in synthetic set)",
    )
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
    if args.pool and not args.update:
        raise BenchError("--pool only goes with --update")
    if args.pool and args.reference:
        raise BenchError("--pool keeps the baseline's reference checkpoint; drop --reference")
    baseline = regression.load_baseline(baseline_path) if not args.update or args.pool else None
    stores = [Path(p) for p in args.results or ["results"]]
    summaries = []
    for results in stores:
        if not results.is_dir():
            raise BenchError(f"results store {results} does not exist; run `bench run` first or pass --results DIR")
        found = ResultsStore(results).summaries()
        if not found:
            raise BenchError(f"results store {results} has no complete runs (no runs/*/summary.json)")
        summaries.extend(found)

    if (args.reference or args.reference_data) and not args.update:
        raise BenchError("--reference only goes with --update (a check uses the baseline's own reference)")
    if args.reference_data and not args.reference:
        raise BenchError("--reference-data needs --reference RUN_ID")
    if args.update:
        data = Path(args.reference_data) if args.reference_data else None
        if args.pool:
            return _write(baseline_path, regression.pool_baseline(baseline, summaries, override))
        return _update(baseline_path, summaries, override, stores, args.reference, data)

    result = regression.compare(baseline, summaries, override, args.latency_ratio)
    if baseline.get("reference"):
        result.rows.append(_reference_row(baseline_path, baseline["reference"]))
    rows = [[r.key, r.metric, r.status, r.verdict] for r in result.rows]
    print(tabulate(rows, ["entry", "check", "status", "why"], disable_numparse=True))
    if result.not_in_baseline:
        print(f"\nnot in the baseline (not checked; --update adds them): {', '.join(result.not_in_baseline)}")
    from bench.weaker_teacher import weaker_teachers

    for weaker in weaker_teachers(summaries):
        print(f"\nnote: {weaker.describe()}; its KD checks measure distillation from a worse model")
    where = ", ".join(map(str, stores))
    if result.missing:
        raise BenchError(f"no results for baseline entries: {'; '.join(result.missing)} (in {where})")
    counts = _check_counts(result.rows)
    if not counts:
        raise BenchError(f"baseline {baseline_path}: no check could be run against the results in {where}")
    print(f"\nran {', '.join(f'{n} {kind}' for kind, n in counts.items())} check(s)" + _informational(result.rows))
    failed = result.regressions
    if failed:
        print(f"\nFAIL: {len(failed)} regression(s) against {baseline_path}:")
        for r in failed:
            print(f"  {r.key} {r.metric}: {r.verdict}")
        return 1
    print(f"\nOK: {sum(counts.values())} checks against {baseline_path} hold")
    return 0


def _check_counts(rows: list) -> dict[str, int]:
    """Checks run per kind: exact, statistical, reference, and latency under --latency-ratio; informational rows
    (latency without it, or on another device) are not checks: they never fail."""
    counts: dict[str, int] = {}
    for row in rows:
        kind = _kind(row)
        if kind != "informational":
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def _kind(row) -> str:
    if row.metric == "reference evaluation":
        return "reference"
    if row.metric == "kd_gain":
        return "KD gain"
    if row.kind == "informational" and row.status in ("ok", "SLOWER"):
        return "latency"
    return row.kind


def _informational(rows: list) -> str:
    shown = sum(_kind(r) == "informational" for r in rows)
    return f" (and {shown} informational row(s), not checks)" if shown else ""


def _torch_version(summaries: list[RunSummary]) -> str | None:
    """The torch version(s) the runs recorded, else the installed one."""
    recorded = sorted({s.torch for s in summaries if s.torch})
    if recorded:
        return ", ".join(recorded)
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return importlib.metadata.version("torch")
    return None


def _reference_row(baseline_path: Path, reference: dict[str, Any]):
    from bench.reference_eval import compare_reference, evaluate_reference, reference_weights_path
    from bench.regression import Comparison

    problems = compare_reference(reference, evaluate_reference(reference, reference_weights_path(baseline_path)))
    count = len(reference["per_case"])
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        verdict = f"{len(problems)} of {count} case-organ metrics changed: {shown}"
    else:
        verdict = f"all {count} case-organ Dice and HD95 equal the committed ones"
    return Comparison(f"reference {reference['model']} ({reference['run_id']})", "exact", "reference evaluation",
                      count, count - len(problems), "== baseline", "CHANGED" if problems else "ok", bool(problems),
                      verdict)  # fmt: skip


def _update(path: Path, summaries: list[RunSummary], override: dict[str, float], stores: list[Path],
            reference_run: str | None, reference_data: Path | None) -> int:  # fmt: skip
    from bench import regression
    from bench.errors import BenchError
    from bench.path_names import is_path_component
    from bench.store_layout import ResultsLayout, RunPaths

    baseline = regression.build_baseline(summaries, override, _torch_version(summaries))
    if reference_run:
        from bench.reference_eval import write_reference

        candidates = [RunPaths(Path(reference_run))]
        if is_path_component(reference_run):
            candidates += [ResultsLayout(s).run(reference_run) for s in stores]
        run = next((c for c in candidates if c.config.is_file()), None)
        if run is None:
            raise BenchError(f"--reference {reference_run}: no such run folder or run in {', '.join(map(str, stores))}")
        baseline["reference"] = write_reference(run.dir, path, reference_data)
        print(f"reference: {reference_run}, {len(baseline['reference']['per_case'])} case-organ metrics")
    return _write(path, baseline)


def _write(path: Path, baseline: dict[str, Any]) -> int:
    from bench import regression

    regression.write_baseline(path, baseline)
    for entry in baseline["entries"]:
        stats = ", ".join(_stat_text(name, stat) for name, stat in entry["statistical"].items())
        print(f"{regression.key_text(entry)}: {stats}")
    print(f"wrote {len(baseline['entries'])} entries to {path}")
    return 0


def _stat_text(name: str, stat: dict[str, Any]) -> str:
    spread = "-" if stat["spread"] is None else f"{stat['spread']:.3g}"
    return f"{name} {stat['value']:.4g} ± {stat['tolerance']:.3g} (spread {spread}, n={stat['samples']})"
