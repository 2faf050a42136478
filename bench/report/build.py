"""Assemble the report from a results store: tables per dataset/preset, figures, then the requested files."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import pandas as pd

from bench.console import Progress
from bench.errors import BenchError
from bench.report import plots as P
from bench.report.ablation import ablation_plot, find_ablations
from bench.report.content import GroupReport, Report
from bench.report.kd_effect import effect_words, kd_effects
from bench.report.stats import case_mean_dice
from bench.report.tables import (
    GROUP,
    KEY,
    aggregate,
    deployment_table,
    organ_frame,
    row_label,
    row_labels,
    runs_frame,
)
from bench.report.writers import write_csv, write_html, write_markdown, write_tex
from bench.run_summary import RunSummary
from bench.store import ResultsStore, slugify
from bench.weaker_teacher import weaker_teachers

FORMATS = ("md", "csv", "tex", "html")
PLOTS_PER_GROUP = 5


def build_report(store: ResultsStore, out_dir: Path, formats: Sequence[str] = FORMATS, progress: bool = True) -> Report:
    """Read every complete run of ``store`` and write the report files of ``formats`` under ``out_dir``.

    Figures (PNG + SVG under ``out_dir/plots``) are made when ``md`` or ``html`` is asked for.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise BenchError(f"--format takes a comma-separated subset of {','.join(FORMATS)}, got {','.join(formats)!r}")
    summaries = store.summaries()
    if not summaries:
        raise BenchError(
            f"results store {store.root} has no complete runs (no runs/*/summary.json); "
            "run `bench run` first or pass --results DIR"
        )
    runs = runs_frame(summaries)
    case_dice = case_mean_dice(store.per_case())
    agg = aggregate(runs, case_dice)
    organs = organ_frame(summaries, runs)
    effects = kd_effects(runs, case_dice)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    groups = agg.groupby(GROUP).ngroups
    header = (
        f"Generated {created} from {store.root}: {len(runs)} runs, {len(agg)} configurations, "
        f"{groups} dataset/preset group{'s' if groups != 1 else ''}."
    )
    report = Report(Path(out_dir), header, runs, agg, organs, [])
    report.deployment = deployment_table(summaries, _export_records(store, summaries))
    weaker = {w.key: w for w in weaker_teachers(summaries)}
    agg["teacher_weaker"] = [tuple(row[k] for k in KEY) in weaker for _, row in agg.iterrows()]
    for (dataset, preset), agg_g in agg.groupby(GROUP, sort=False):
        organs_g = organs[(organs.dataset == dataset) & (organs.preset == preset)]
        runs_g = runs[(runs.dataset == dataset) & (runs.preset == preset)]
        notes = _notes(runs_g) + [
            f"{w.describe()}: this row measures distillation from a worse model"
            for w in weaker.values()
            if (w.dataset, w.preset) == (dataset, preset)
        ]
        group = GroupReport(dataset, preset, agg_g.reset_index(drop=True), organs_g, notes)
        paired = (effects.dataset == dataset) & (effects.preset == preset) & (effects.pairs > 0)
        group.effects = effects[paired].reset_index(drop=True)  # KD runs with their teacher and no-KD run
        group.effect_words = effect_words(group.effects)
        group.ablations = find_ablations(group.agg, dataset, preset)
        report.groups.append(group)
    if "md" in formats or "html" in formats:
        _make_plots(report, store, case_dice, progress)
    out_dir = report.out_dir
    if "md" in formats:
        write_markdown(report, out_dir / "report.md")
        report.files.append(out_dir / "report.md")
    if "html" in formats:
        write_html(report, out_dir / "report.html")
        report.files.append(out_dir / "report.html")
    if "csv" in formats:
        report.files += write_csv(report, out_dir)
    if "tex" in formats:
        write_tex(report, out_dir / "tables.tex")
        report.files.append(out_dir / "tables.tex")
    return report


def _make_plots(report: Report, store: ResultsStore, case_dice: pd.DataFrame, progress: bool) -> None:
    total = sum(PLOTS_PER_GROUP + len(group.ablations) for group in report.groups)
    with Progress(total, "report figures", "figures", enabled=progress) as bar:
        for group in report.groups:
            stem = report.out_dir / "plots" / f"{slugify(group.dataset)}__{slugify(group.preset)}"
            labels = row_labels(group.agg)
            makers = [
                partial(P.pareto_plot, group.agg, labels, stem),
                partial(P.organ_heatmap, group.organs, group.agg, labels, stem),
                partial(P.kd_gain_plot, group.agg, stem),
                partial(_training_curves, store, report.runs, group, stem),
                partial(P.case_dice_boxplot, _case_values(case_dice, group.agg, labels), stem),
            ]
            for make in makers:
                plot = make()
                if plot is not None:
                    group.plots.append(plot)
                bar.update()
            for ablation in group.ablations:
                ablation.plot = ablation_plot(ablation, stem)
                bar.update()


def _values(runs: pd.DataFrame, column: str) -> list:
    """The distinct recorded values of ``column`` (missing ones left out), in first-seen order."""
    return [v for v in dict.fromkeys(runs[column].dropna()) if v != "-"]


def _counts(runs: pd.DataFrame, column: str) -> str:
    return "/".join(str(int(v)) for v in _values(runs, column)) or "?"


def _about(runs: pd.DataFrame) -> list[str]:
    """What a reader needs before the numbers: the data, the protocol and the latency machine, as the runs
    recorded them (stores from before these were recorded say so)."""
    synthetic = _values(runs, "dataset_synthetic")
    if synthetic == [1.0]:
        kind = "synthetic (procedural abdominal CT from `bench data synth`, not real patients)"
    elif synthetic == [0.0]:
        kind = "real images (not the built-in synthetic set)"
    else:
        kind = "synthetic or real: not recorded" if not synthetic else "mixed synthetic and real"
    notes = []
    if _values(runs, "n_train"):
        kind += (
            f"; {_counts(runs, 'n_train')} training, {_counts(runs, 'n_val')} validation and "
            f"{_counts(runs, 'n_test')} test cases"
        )
    notes.append(f"Data: {kind}")
    protocol = f"iterations {_counts(runs, 'iterations')}, training patch {', '.join(_values(runs, 'patch')) or '?'}"
    widths = _values(runs, "base_channels")
    if widths and all(w > 0 for w in widths):
        protocol += (
            f"; widths reduced to base_channels={'/'.join(str(int(w)) for w in widths)} (the preset's "
            "base_channels replaces each network's own width to keep CPU training short, so params and "
            "GMACs are far below the full-width counts in the README; `bench profile` gives those)"
        )
    elif widths:
        protocol += "; each network at its own width"
    else:
        protocol += "; widths not recorded"
    notes.append(f"Protocol: {protocol}")
    cpus = _values(runs, "latency_cpu")
    if cpus:
        n_cpus = "/".join(str(int(v)) for v in _values(runs, "latency_cpu_count"))
        notes.append(
            f"Latency machine: {', '.join(cpus)} ({n_cpus} logical CPUs); the latency column gives the "
            "threads used and the 1-minute load average when each was measured"
        )
    else:
        notes.append("Latency machine: not recorded (runs from before CPU model, threads and load were stored)")
    return notes


def _export_records(store: ResultsStore, summaries: list[RunSummary]) -> dict[str, list[dict]]:
    """Run id -> the records ``bench export`` left in the run directory (``export.json``, ``export.openvino.json``);
    runs without one are left out."""
    import json

    records: dict[str, list[dict]] = {}
    for summary in summaries:
        for path in store.paths(summary.run_id).export_records():
            try:
                records.setdefault(summary.run_id, []).append(json.loads(path.read_text(encoding="utf-8")))
            except FileNotFoundError:
                continue
            except (OSError, ValueError, RecursionError) as err:
                raise BenchError(f"cannot read {path}: {str(err) or type(err).__name__}") from None
    return records


def _notes(runs: pd.DataFrame) -> list[str]:
    """The metric policies the runs recorded (HD95 definition, empty-mask handling, torch), stated per table."""
    notes = _about(runs)
    for column, title in (
        ("hd95_definition", "HD95 definition"),
        ("empty_mask_policy", "empty masks"),
        ("torch", "torch"),
    ):
        values = [v for v in dict.fromkeys(runs[column]) if v != "-"]
        if values:
            notes.append(f"{title}: {', '.join(values)}")
    return notes


def _training_curves(store: ResultsStore, runs: pd.DataFrame, group: GroupReport, stem: Path) -> P.Plot | None:
    logs, kinds = _train_logs(store, runs, group)
    return P.training_curves(logs, stem, kinds)


def _train_logs(
    store: ResultsStore, runs: pd.DataFrame, group: GroupReport
) -> tuple[dict[str, pd.DataFrame], dict[str, tuple[str, str]]]:
    """The training logs of a group by curve label, and each label's (model, KD method)."""
    chosen = runs[(runs.dataset == group.dataset) & (runs.preset == group.preset)]
    several = chosen.groupby(["model", "kd"])["teacher"].transform("nunique") > 1
    logs, kinds = {}, {}
    for (_, run), with_teacher in zip(chosen.iterrows(), several):
        log = store.train_log(run["run_id"])
        if log is not None:
            seed = "" if pd.isna(run["seed"]) else f" s{int(run['seed'])}"
            label = row_label(run, with_teacher) + seed
            logs[label], kinds[label] = log, (run["model"], run["kd"])
    return logs, kinds


def _case_values(case_dice: pd.DataFrame, agg: pd.DataFrame, labels: list[str]) -> dict[str, list[float]]:
    """Per-case mean foreground Dice of each row, cases of all its seeds pooled."""
    by_run = case_dice.dropna(subset=["case_dice"]).groupby("run_id")["case_dice"].apply(list).to_dict()
    return {
        label: [v for run_id in row["run_ids"] for v in by_run.get(run_id, [])]
        for label, (_, row) in zip(labels, agg.iterrows())
    }
