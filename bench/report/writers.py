"""Report files: ``report.md``, a self-contained ``report.html``, CSV tables and ``tables.tex``, written atomically."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench.atomic import atomic_write_text
from bench.report import ablation as A
from bench.report import kd_effect as E
from bench.report.content import Report
from bench.report.plots import Plot
from bench.report.tables import main_csv_frame, main_table, organ_table, tex_escape
from bench.store import slugify

NOTES = [
    "Dice and HD95: mean over cases; ± is the standard deviation over seeds when a row has several seeds, otherwise "
    "over cases (column `dice_std_over` in main_table.csv says which).",
    "HD95 in mm (voxel spacing of the images); its definition and how empty masks enter the means are stated under "
    "each dataset heading, as the runs recorded them.",
    "Cross-validation (`seeds x N folds`): per seed the folds are pooled, each test case counted once (the folds' "
    "Dice and HD95 weighted by their test cases, as nnU-Net's cross-validation summary); the bracket is the spread "
    "(standard deviation) of the folds' Dice.",
    "ΔDice / ΔHD95: the KD row minus the same student trained without KD on the same dataset, preset and seeds "
    "(mean of the per-seed differences).",
    "teacher (weaker): the teacher's test Dice is below the same student's without KD, so the row measures "
    "distillation from a worse model (the numbers are in the notes under the dataset heading).",
    "\\* p<0.05, \\*\\* p<0.01: two-sided Wilcoxon signed-rank test over cases of the per-case mean foreground Dice "
    "(averaged over the common seeds) against the same student without KD; p-values in main_table.csv.",
    "GMACs: 10^9 multiply-accumulates of one forward pass at the stated patch (GFLOPs = 2 x GMACs); latency: median "
    "forward time on the stated device, with the threads used and the machine's 1-minute load average at the time "
    "(`busy`: the load exceeded the CPUs, so other work competed and the figure is slower than on a quiet machine).",
    "peak mem: the memory one forward pass needs beyond what the process already held, measured in a fresh process. "
    "On CUDA, torch's peak allocation above the weights and input; on the CPU, the peak rise of the process's "
    "resident memory (RSS, sampled every 0.5 ms). The CPU figure is a lower bound: the MAC count ran one forward pass "
    "just before, and memory the allocator kept from it is not counted again, which is why a small network can "
    "show a few MB.",
    "missed/FP/empty: organ instances with the reference present but nothing predicted / nothing in the reference but "
    "something predicted / both empty, per seed.",
    "With several runs of one configuration and seed, the latest (`created`) is used. `-`: not recorded.",
]
DEPLOYMENT_NOTE = (
    "Runs exported with `bench export`: ONNX file sizes, latency of one patch (PyTorch and onnxruntime, measured by "
    "the export on its machine), whole-CT time (the main table's `whole CT (s)`: sliding-window inference over a "
    "160x256x256 volume unless `bench run --whole-volume` said otherwise, at the preset's window and overlap, measured "
    "by `bench run`), and Dice on the test split of the PyTorch run and of the float and int8 ONNX models."
)


def _group_title(group) -> str:
    return f"{group.dataset} / preset {group.preset}"


def write_markdown(report: Report, path: Path) -> None:
    lines = ["# segkd-bench report", "", report.header, "", *(f"- {note}" for note in NOTES), ""]
    for group in report.groups:
        lines += [f"## {_group_title(group)}", ""]
        if group.notes:
            lines += [*(f"- {note}" for note in group.notes), ""]
        lines += ["### Main table", ""]
        lines += [tabulate(*_swap(main_table(group.agg)), tablefmt="github", disable_numparse=True), ""]
        if len(group.effects):
            lines += ["### What KD did", "", E.NOTE, ""]
            lines += [tabulate(*_swap(E.effect_table(group.effects)), tablefmt="github", disable_numparse=True), ""]
            lines += [*(f"- {line}" for line in group.effect_words), ""]
        for metric, title in (("dice", "Per-organ Dice"), ("hd95", "Per-organ HD95 (mm)")):
            if len(group.organs):
                lines += [f"### {title}", ""]
                lines += [
                    tabulate(
                        *_swap(organ_table(group.organs, group.agg, metric)), tablefmt="github", disable_numparse=True
                    ),
                    "",
                ]
        if group.plots:
            lines += ["### Figures", ""]
            for plot in group.plots:
                rel = plot.png.relative_to(path.parent).as_posix()
                svg = plot.svg.relative_to(path.parent).as_posix()
                lines += [f"![{plot.title}]({rel})", "", f"*{plot.title}* ([SVG]({svg}))", ""]
        for ablation in group.ablations:
            lines += [f"### {ablation.title}", "", A.NOTE, ""]
            lines += [tabulate(*_swap(A.table(ablation)), tablefmt="github", disable_numparse=True), ""]
            if ablation.plot is not None:
                rel = ablation.plot.png.relative_to(path.parent).as_posix()
                lines += [f"![{ablation.title}]({rel})", ""]
    if report.deployment[1]:
        lines += [
            "## Deployment",
            "",
            DEPLOYMENT_NOTE,
            "",
            tabulate(*_swap(report.deployment), tablefmt="github", disable_numparse=True),
            "",
        ]
    atomic_write_text(path, "\n".join(lines))


def _swap(table: tuple[list[str], list[list]]) -> tuple[list[list], list[str]]:
    """``main_table`` returns (headers, rows); tabulate takes (rows, headers)."""
    headers, rows = table
    return rows, headers


def write_html(report: Report, path: Path) -> None:
    """One file a person can open anywhere: CSS inline, every figure embedded as a base64 PNG."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>segkd-bench report</title>',
        "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;"
        "margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}"
        "th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}img{max-width:100%;"
        "border:1px solid #eee;margin:0.5em 0}figcaption{color:#555;font-size:13px}</style></head><body>",
        "<h1>segkd-bench report</h1>",
        f"<p>{esc(report.header)}</p>",
        "<ul>",
        *(f"<li>{esc(note.replace(chr(92), '').replace('`', ''))}</li>" for note in NOTES),
        "</ul>",
    ]
    for group in report.groups:
        parts += [
            f"<h2>{esc(_group_title(group))}</h2>",
            "<ul>",
            *(f"<li>{esc(note.replace('`', ''))}</li>" for note in group.notes),
            "</ul>",
            "<h3>Main table</h3>",
            tabulate(*_swap(main_table(group.agg)), tablefmt="html", disable_numparse=True),
        ]
        if len(group.effects):
            parts += [
                "<h3>What KD did</h3>",
                f"<p>{esc(E.NOTE)}</p>",
                tabulate(*_swap(E.effect_table(group.effects)), tablefmt="html", disable_numparse=True),
                "<ul>",
                *(f"<li>{esc(line)}</li>" for line in group.effect_words),
                "</ul>",
            ]
        for metric, title in (("dice", "Per-organ Dice"), ("hd95", "Per-organ HD95 (mm)")):
            if len(group.organs):
                parts += [
                    f"<h3>{title}</h3>",
                    tabulate(
                        *_swap(organ_table(group.organs, group.agg, metric)), tablefmt="html", disable_numparse=True
                    ),
                ]
        parts += [_html_figure(plot) for plot in group.plots]
        for ablation in group.ablations:
            parts += [
                f"<h3>{esc(ablation.title)}</h3>",
                f"<p>{esc(A.NOTE)}</p>",
                tabulate(*_swap(A.table(ablation)), tablefmt="html", disable_numparse=True),
            ]
            if ablation.plot is not None:
                parts.append(_html_figure(ablation.plot))
    if report.deployment[1]:
        parts += [
            "<h2>Deployment</h2>",
            f"<p>{esc(DEPLOYMENT_NOTE)}</p>",
            tabulate(*_swap(report.deployment), tablefmt="html", disable_numparse=True),
        ]
    parts.append("</body></html>")
    atomic_write_text(path, "\n".join(parts) + "\n")


def _html_figure(plot: Plot) -> str:
    esc = html.escape
    data = base64.b64encode(plot.png.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{esc(plot.title)}" src="data:image/png;base64,{data}">\n'
        f"<figcaption>{esc(plot.title)}</figcaption></figure>"
    )


def write_csv(report: Report, out_dir: Path) -> list[Path]:
    """``main_table.csv`` (raw numbers, p-values), ``kd_effect.csv`` (what KD did: gap, gain, share closed, paired
    test), ``per_organ.csv`` (long), ``runs.csv`` (one row per run) and one
    ``ablation/<dataset>__<preset>__ablation__...csv`` per ablation table."""
    frames = {
        "main_table.csv": main_csv_frame(report.agg),
        "kd_effect.csv": pd.concat([g.effects for g in report.groups if len(g.effects)] or [E.empty()]),
        "per_organ.csv": report.organs,
        "runs.csv": report.runs,
    }
    paths = []
    for name, frame in frames.items():
        atomic_write_text(out_dir / name, frame.to_csv(index=False))
        paths.append(out_dir / name)
    if report.deployment[1]:
        headers, rows = report.deployment
        atomic_write_text(out_dir / "deployment.csv", pd.DataFrame(rows, columns=headers).to_csv(index=False))
        paths.append(out_dir / "deployment.csv")
    for group in report.groups:
        for ablation in group.ablations:
            path = out_dir / "ablation" / f"{slugify(group.dataset)}__{slugify(group.preset)}__{ablation.name}.csv"
            atomic_write_text(path, A.csv_frame(ablation).to_csv(index=False))
            paths.append(path)
    return paths


def write_tex(report: Report, path: Path) -> None:
    """``tables.tex``: main and per-organ tables per dataset/preset (needs ``\\usepackage{graphicx}`` only for the
    ``\\resizebox``)."""
    parts = ["% segkd-bench report tables; " + report.header]
    for group in report.groups:
        title = tex_escape(_group_title(group))
        tables = [("Main results", main_table(group.agg, style="tex"))]
        if len(group.effects):
            headers, rows = E.effect_table(group.effects)
            tables.append(("What KD did", ([tex_escape(h) for h in headers],
                                           [[tex_escape(c) for c in row] for row in rows])))  # fmt: skip
        if len(group.organs):
            tables += [
                ("Per-organ Dice", organ_table(group.organs, group.agg, "dice", style="tex")),
                ("Per-organ HD95 (mm)", organ_table(group.organs, group.agg, "hd95", style="tex")),
            ]
        tables += [(tex_escape(a.title), A.table(a, style="tex")) for a in group.ablations]
        for caption, (headers, rows) in tables:
            body = tabulate(rows, headers, tablefmt="latex_raw", disable_numparse=True)
            parts += [
                "\\begin{table}[t]",
                "\\centering",
                f"\\caption{{{caption}: {title}}}",
                "\\resizebox{\\textwidth}{!}{%",
                body,
                "}",
                "\\end{table}",
                "",
            ]
    atomic_write_text(path, "\n".join(parts))
