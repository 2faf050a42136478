"""``bench report``: tables, significance tests, figures, report.md and a self-contained report.html from the results
store.

Reads every complete run under RESULTS/runs (those with a summary.json) and writes, by default into RESULTS/report:
report.md and report.html (tables and figures), main_table.csv / per_organ.csv / runs.csv (raw numbers and
p-values), tables.tex (LaTeX), and plots/*.png|svg (Pareto plot, per-organ Dice heatmap, KD gain, training curves,
per-case Dice box plots). Rows are grouped per dataset and preset; several seeds are averaged; KD rows are compared
with the same student trained without KD (delta and paired Wilcoxon test over cases).

With --out DIR, the report never replaces a file it did not write there: .bench-report.json lists the files it wrote
with their checksums, and a report.md (or another of its names) that is not listed, or was edited since, stops it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench.list_args import parse_name_list


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write tables, figures, report.md and report.html from the results store",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--results", default="results", metavar="DIR", help="results store directory (default: results)")
    p.add_argument("--out", metavar="DIR", help="output directory (default: RESULTS/report)")
    p.add_argument(
        "--format",
        default="md,csv,tex,html",
        metavar="LIST",
        help="comma-separated subset of md,csv,tex,html (default: all); figures come with md or html",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bench.atomic import protect, refuse_links
    from bench.errors import BenchError, disk_full_as_error
    from bench.report import build_report
    from bench.report.manifest import check_replaceable, record
    from bench.store import ResultsStore
    from bench.store_layout import ResultsLayout

    formats = parse_name_list(args.format, "--format")
    results = Path(args.results)
    if not results.is_dir():
        raise BenchError(f"results store {results} does not exist; run `bench run` first or pass --results DIR")
    store = ResultsStore(results)
    out = Path(args.out) if args.out else ResultsLayout(results).report
    if args.out:
        protect(out)  # the folder the user named may be a link; nothing the report makes inside it is followed
    refuse_links(out / "plots" / "x", itself=True)
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise BenchError(f"report folder {out} cannot be written ({existing} exists and is not a folder)")
    if not os.access(existing, os.W_OK | os.X_OK):  # checked up front: nothing is written before it fails
        hint = "; a read-only results folder needs --out DIR elsewhere" if store.readonly else ""
        raise BenchError(f"report folder {out} cannot be written ({existing} is read-only){hint}")
    if args.out and os.path.abspath(out) != os.path.abspath(ResultsLayout(results).report):
        check_replaceable(out)  # a folder the user named may hold their own report.md
    with disk_full_as_error(out):
        report = build_report(store, out, formats)
        record(out)
    print(report.terminal_table())
    print()
    print(
        f"wrote {len(report.files)} report file(s) and {sum(2 * len(g.plots) for g in report.groups)} figure file(s) "
        f"to {report.out_dir}"
    )
    return 0
