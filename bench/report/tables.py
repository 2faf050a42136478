"""Report tables as pandas frames: one row per run, one per (model, KD, teacher) over seeds, and per-organ values.

Every summary value may be missing (``None``: not recorded, or not measured); missing text becomes ``-`` and missing
numbers NaN, shown as ``-``. The column lists name :class:`bench.run_summary.RunSummary` fields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from bench.components.syntax import Component, parse_component
from bench.errors import BenchError
from bench.report import fmt
from bench.report.stats import paired_wilcoxon, significance_mark
from bench.run_summary import RunSummary

GROUP = ["dataset", "preset"]
KEY = [*GROUP, "model", "kd", "teacher"]
NO_KD = "none"
TEXT_COLUMNS = [
    "run_id",
    "dataset",
    "preset",
    "model",
    "kd",
    "teacher",
    "teacher_run",
    "preset_hash",
    "patch",
    "device",
    "latency_device",
    "created",
    "torch",
    "hd95_definition",
    "empty_mask_policy",
    "latency_cpu",
]
NUMERIC_COLUMNS = [
    "seed",
    "fold",
    "params",
    "gmacs",
    "latency_ms_median",
    "latency_ms_p90",
    "whole_ct_seconds",
    "peak_mem_mb",
    "dice_mean",
    "dice_std",
    "hd95_mean",
    "hd95_std",
    "n_cases",
    "n_missed",
    "n_false_positive",
    "n_both_empty",
    "train_seconds",
    "iterations",
    # recorded since the report explains itself; missing (NaN) in older stores
    "latency_threads",
    "latency_load_avg",
    "latency_cpu_count",
    "dataset_synthetic",
    "n_train",
    "n_val",
    "n_test",
    "base_channels",
]
MEAN_OVER_SEEDS = [
    "params",
    "gmacs",
    "latency_ms_median",
    "latency_ms_p90",
    "whole_ct_seconds",
    "peak_mem_mb",
    "n_cases",
    "n_missed",
    "n_false_positive",
    "n_both_empty",
    "train_seconds",
]


def _patch_text(patch: Any) -> str | None:
    if isinstance(patch, (list, tuple)):
        return "x".join(str(p) for p in patch)
    return None if patch is None else str(patch)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def kd_label(kd: Any, hparams: Any) -> Any:
    """The run's KD component text naming the variant each part ran, where the method records one (``variant`` in
    its settings, e.g. MS-KD) and the text does not set it: ``ms`` -> ``ms:variant=paper``, ``ca+ms`` ->
    ``ca+ms:variant=paper``. So rows of different formulas under one name are told apart and named; any other text
    is returned unchanged."""
    if not isinstance(kd, str) or kd == NO_KD or not isinstance(hparams, dict):
        return kd
    try:
        component = parse_component(kd, "kd", "kd")
    except BenchError:
        return kd
    settings = hparams if component.is_composition else {component.name: hparams}
    kwargs = {}
    for part in component.parts:
        args = dict(part.kwargs)
        part_settings = settings.get(part.name)
        variant = part_settings.get("variant") if isinstance(part_settings, dict) else None
        if isinstance(variant, str) and "variant" not in args:
            args["variant"] = variant
        kwargs[part.name] = args
    if component.is_composition:
        return str(Component(component.name, {name: args for name, args in kwargs.items() if args}))
    return str(Component(component.name, kwargs[component.name]))


def runs_frame(summaries: list[RunSummary]) -> pd.DataFrame:
    """One row per run; for several runs of one (key, seed) only the latest ``created`` is kept. A KD method's
    named variant becomes part of its text (:func:`kd_label`)."""
    rows = []
    for summary in summaries:
        row: dict[str, Any] = {c: getattr(summary, c) for c in TEXT_COLUMNS}
        row["kd"] = kd_label(summary.kd, summary.kd_hparams)
        row["patch"] = _patch_text(summary.patch)
        row.update({c: _number(getattr(summary, c)) for c in NUMERIC_COLUMNS})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=TEXT_COLUMNS + NUMERIC_COLUMNS)
    for column in TEXT_COLUMNS:
        frame[column] = frame[column].map(fmt.text).astype(object)
    frame = frame.sort_values(["created", "run_id"], kind="stable")
    frame = frame.drop_duplicates([*KEY, "seed", "fold"], keep="last")
    return frame.sort_values("run_id", kind="stable").reset_index(drop=True)


# Counts add up over the folds of a cross-validation, each fold testing other cases.
_SUMMED_OVER_FOLDS = ["n_cases", "n_missed", "n_false_positive", "n_both_empty", "train_seconds"]


def pool_folds(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (key, seed): the runs of the folds of a cross-validation pooled as nnU-Net's cross-validation
    summary does, each test case counted once. Dice and HD95 are the folds' means weighted by their test cases,
    counts are summed; ``fold_dice_std`` is the spread of the folds' Dice (NaN for one fold), ``run_ids`` the runs
    pooled and ``folds`` their folds."""
    rows = []
    for _, g in runs.groupby([*KEY, "seed"], sort=False, dropna=False):
        row = g.iloc[0].to_dict()
        row["run_ids"] = list(g["run_id"])
        row["folds"] = ",".join(str(int(f)) for f in sorted(g["fold"]))
        row["fold_dice_std"] = g["dice_mean"].std(ddof=1) if len(g) > 1 else np.nan
        if len(g) > 1:
            weights = g["n_cases"].fillna(1).clip(lower=1)
            for metric in ("dice", "hd95"):
                values = g[f"{metric}_mean"]
                ok = values.notna()
                row[f"{metric}_mean"] = np.average(values[ok], weights=weights[ok]) if ok.any() else np.nan
                row[f"{metric}_std"] = np.nan  # the spread over cases of the pooled folds is not in the summaries
            row.update({c: g[c].sum(min_count=1) for c in _SUMMED_OVER_FOLDS})
        rows.append(row)
    columns = [*runs.columns, "run_ids", "folds", "fold_dice_std"]
    return pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)


def _by_seed(runs: pd.DataFrame, column: str) -> pd.Series:
    return runs.dropna(subset=["seed", column]).set_index("seed")[column]


def _mean_std(runs: pd.DataFrame, metric: str) -> tuple[float, float, str]:
    """Mean and std over seeds when several seeds have the metric, else the single run's value and case std."""
    values = runs[metric].dropna()
    if len(values) > 1:
        return values.mean(), values.std(ddof=1), "seeds"
    if len(values) == 1:
        return values.iloc[0], runs.loc[values.index, metric.replace("_mean", "_std")].iloc[0], "cases"
    return np.nan, np.nan, ""


def _joined(values: pd.Series) -> str:
    unique = [v for v in dict.fromkeys(values) if v != fmt.MISSING]
    return ", ".join(unique) if unique else fmt.MISSING


def _sort_key(row: pd.Series) -> tuple:
    return (row["dataset"], row["preset"], row["model"], row["kd"] != NO_KD, row["kd"], row["teacher"])


def aggregate(runs: pd.DataFrame, case_dice: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, preset, model, kd, teacher): means over seeds, deltas and a paired test against no KD.

    Deltas use the seeds both the KD row and the same student without KD have (mean of per-seed differences). The
    Wilcoxon test pairs cases: each case's mean foreground Dice, averaged over those common seeds. The folds of a
    cross-validation are pooled per seed first (:func:`pool_folds`).
    """
    runs = pool_folds(runs)
    rows = []
    for key, runs_k in runs.groupby(KEY, sort=False, dropna=False):
        row: dict[str, Any] = dict(zip(KEY, key))
        seeds = sorted(int(s) for s in runs_k["seed"].dropna())
        row["n_seeds"] = len(runs_k)
        row["seeds"] = ",".join(map(str, seeds)) or fmt.MISSING
        row["run_ids"] = [r for ids in runs_k["run_ids"] for r in ids]
        row["folds"] = _joined(runs_k["folds"])
        row["n_folds"] = max(len(f.split(",")) for f in runs_k["folds"])
        row["fold_dice_std"] = runs_k["fold_dice_std"].mean()
        row.update({c: runs_k[c].mean() for c in MEAN_OVER_SEEDS})
        for metric in ("dice", "hd95"):
            row[f"{metric}_mean"], row[f"{metric}_std"], row[f"{metric}_std_over"] = _mean_std(runs_k, f"{metric}_mean")
        row["patch"] = _joined(runs_k["patch"])
        row["latency_device"] = _joined(runs_k["latency_device"])
        row["latency_threads"] = _joined(runs_k["latency_threads"].dropna().astype(int).astype(str))
        row["latency_load_max"] = runs_k["latency_load_avg"].max()
        row["latency_cpu_count"] = runs_k["latency_cpu_count"].min()
        row.update(_against_no_kd(runs, runs_k, key, case_dice))
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=KEY)
    frame = pd.DataFrame(rows)
    order = sorted(range(len(frame)), key=lambda i: _sort_key(frame.iloc[i]))
    return frame.iloc[order].reset_index(drop=True)


def _against_no_kd(runs: pd.DataFrame, runs_k: pd.DataFrame, key: tuple, case_dice: pd.DataFrame) -> dict[str, Any]:
    dataset, preset, model, kd, _ = key
    empty = {
        "delta_seeds": 0,
        "delta_dice": np.nan,
        "delta_dice_std": np.nan,
        "delta_hd95": np.nan,
        "delta_hd95_std": np.nan,
        "p_wilcoxon": np.nan,
        "n_pairs": 0,
        "wilcoxon_note": "",
    }
    if kd in (NO_KD, fmt.MISSING):
        return empty
    base = runs[(runs.dataset == dataset) & (runs.preset == preset) & (runs.model == model) & (runs.kd == NO_KD)]
    common = sorted(set(runs_k["seed"].dropna()) & set(base["seed"].dropna()))
    if not common:
        return {**empty, "wilcoxon_note": "no run of the same student without KD with the same seed"}
    out = dict(empty, delta_seeds=len(common))
    for metric in ("dice", "hd95"):
        diff = (_by_seed(runs_k, f"{metric}_mean") - _by_seed(base, f"{metric}_mean")).loc[common].dropna()
        out[f"delta_{metric}"] = diff.mean() if len(diff) else np.nan
        out[f"delta_{metric}_std"] = diff.std(ddof=1) if len(diff) > 1 else np.nan
    treated = _case_values(case_dice, _pooled_ids(runs_k[runs_k.seed.isin(common)]))
    control = _case_values(case_dice, _pooled_ids(base[base.seed.isin(common)]))
    test = paired_wilcoxon(treated, control)
    out.update(p_wilcoxon=np.nan if test.p is None else test.p, n_pairs=test.n, wilcoxon_note=test.note)
    return out


def _pooled_ids(runs: pd.DataFrame) -> list[str]:
    return [r for ids in runs["run_ids"] for r in ids]


def _case_values(case_dice: pd.DataFrame, run_ids: list[str]) -> pd.Series:
    chosen = case_dice[case_dice.run_id.isin(set(run_ids))]
    return chosen.groupby("case")["case_dice"].mean()


def organ_frame(summaries: list[RunSummary], runs: pd.DataFrame) -> pd.DataFrame:
    """Long format (key, organ, dice, hd95, n_missed, n_false_positive), means over the runs kept in ``runs``."""
    keep = set(runs.run_id)
    key_of = runs.set_index("run_id")[KEY].to_dict("index")
    rows = []
    for summary in summaries:
        if summary.run_id not in keep or summary.per_organ is None:
            continue
        for organ, values in summary.per_organ.items():
            values = values if isinstance(values, dict) else {}
            rows.append(
                {
                    **key_of[summary.run_id],
                    "organ": str(organ),
                    **{m: _number(values.get(m)) for m in ("dice", "hd95", "n_missed", "n_false_positive")},
                }
            )
    columns = [*KEY, "organ", "dice", "hd95", "n_missed", "n_false_positive"]
    if not rows:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame(rows).groupby([*KEY, "organ"], sort=False, dropna=False).mean().reset_index()[columns]


def row_label(row: pd.Series | dict, with_teacher: bool = False) -> str:
    """``lcovnet`` without KD, ``lcovnet+ca`` with, ``lcovnet+ca (T: unet3d)`` where teachers must be told apart."""
    if row["kd"] in (NO_KD, fmt.MISSING):
        return str(row["model"])
    label = f"{row['model']}+{row['kd']}"
    return f"{label} (T: {row['teacher']})" if with_teacher else label


def row_labels(agg: pd.DataFrame) -> list[str]:
    teachers = agg.groupby(["model", "kd"])["teacher"].transform("nunique") if len(agg) else pd.Series(dtype=int)
    return [row_label(row, bool(n > 1)) for (_, row), n in zip(agg.iterrows(), teachers)]


# Main table columns: (markdown header, LaTeX header, formatter(row, pm)).
Column = tuple[str, str, Callable[[pd.Series, str], str]]


def _latency(row: pd.Series) -> str:
    """``19.6 @ cpu, 1 thr, load 0.4``: the threads used and the 1-minute load average when it was measured (the
    highest over seeds); ``busy`` where the load exceeded the CPUs. Older stores recorded neither."""
    value = fmt.num(row["latency_ms_median"], 1)
    device = row["latency_device"]
    if fmt.MISSING in (value, device):
        return value
    text = f"{value} @ {device}"
    threads, load = row.get("latency_threads", fmt.MISSING), row.get("latency_load_max")
    if threads != fmt.MISSING:
        text += f", {threads} thr"
    if not fmt.is_missing(load):
        busy = not fmt.is_missing(row.get("latency_cpu_count")) and load > row["latency_cpu_count"]
        text += f", load {load:.1f}" + (" (busy)" if busy else "")
    return text


def _teacher(row: pd.Series) -> str:
    """The teacher, marked ``(weaker)`` where it scores below the same student without KD (``bench.weaker_teacher``)."""
    return f"{row['teacher']} (weaker)" if bool(row.get("teacher_weaker", False)) else row["teacher"]


def _seeds(row: pd.Series) -> str:
    """``1 seed``, ``3 seeds``: a count (the seed numbers are in main_table.csv); with a cross-validation ``1 seed x
    5 folds (±0.012)``, the spread of the folds' Dice in brackets."""
    n = int(row["n_seeds"])
    text = f"{n} seed" if n == 1 else f"{n} seeds"
    folds = row.get("n_folds", 1)
    if fmt.is_missing(folds) or int(folds) <= 1:
        return text
    return f"{text} x {int(folds)} folds (±{fmt.num(row['fold_dice_std'], 3)})"


def _delta_dice(row: pd.Series) -> str:
    value = fmt.num(row["delta_dice"], 4, signed=True)
    p = row["p_wilcoxon"]
    return value + significance_mark(None if fmt.is_missing(p) else float(p)) if value != fmt.MISSING else value


def _empties(row: pd.Series) -> str:
    return "/".join(fmt.count(row[c]) for c in ("n_missed", "n_false_positive", "n_both_empty"))


MAIN_COLUMNS: list[Column] = [
    ("model", "model", lambda r, pm: r["model"]),
    ("KD", "KD", lambda r, pm: r["kd"]),
    ("teacher", "teacher", lambda r, pm: _teacher(r)),
    ("seeds", "seeds", lambda r, pm: _seeds(r)),
    ("params (M)", "params (M)", lambda r, pm: fmt.num(r["params"] / 1e6, 3)),
    ("GMACs", "GMACs", lambda r, pm: fmt.num(r["gmacs"], 2)),
    ("patch", "patch", lambda r, pm: r["patch"]),
    ("latency ms @ device", "latency ms @ device", lambda r, pm: _latency(r)),
    ("whole CT (s)", "whole CT (s)", lambda r, pm: fmt.num(r["whole_ct_seconds"], 1)),
    ("peak mem (MB)", "peak mem (MB)", lambda r, pm: fmt.num(r["peak_mem_mb"], 0)),
    ("Dice", "Dice", lambda r, pm: fmt.mean_pm(r["dice_mean"], r["dice_std"], 4, pm)),
    ("HD95 (mm)", "HD95 (mm)", lambda r, pm: fmt.mean_pm(r["hd95_mean"], r["hd95_std"], 2, pm)),
    ("ΔDice", r"$\Delta$Dice", lambda r, pm: _delta_dice(r)),
    ("ΔHD95", r"$\Delta$HD95", lambda r, pm: fmt.num(r["delta_hd95"], 2, signed=True)),
    ("cases", "cases", lambda r, pm: fmt.count(r["n_cases"])),
    ("missed/FP/empty", "missed/FP/empty", lambda r, pm: _empties(r)),
]

TERMINAL_COLUMNS = [
    "model",
    "KD",
    "teacher",
    "GMACs",
    "latency ms @ device",
    "whole CT (s)",
    "Dice",
    "HD95 (mm)",
    "ΔDice",
]

TEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def tex_escape(text: str) -> str:
    return "".join(TEX_SPECIALS.get(ch, ch) for ch in text)


def main_table(agg: pd.DataFrame, style: str = "md", columns: list[str] | None = None) -> tuple[list[str], list[list]]:
    """Headers and formatted rows; ``style`` ``tex`` escapes text and uses ``$\\pm$`` (the others use ``±``)."""
    chosen = [c for c in MAIN_COLUMNS if columns is None or c[0] in columns]
    tex = style == "tex"
    pm = r"$\pm$" if tex else "±"
    headers = [c[1] if tex else c[0] for c in chosen]
    rows = []
    for _, row in agg.iterrows():
        cells = [str(c[2](row, pm)) for c in chosen]
        rows.append([_tex_cell(cell) for cell in cells] if tex else cells)
    return headers, rows


def _tex_cell(cell: str) -> str:
    """Escape a formatted cell, keeping the ``$\\pm$`` that ``mean_pm`` put in."""
    return r"$\pm$".join(tex_escape(part) for part in cell.split(r"$\pm$"))


def organ_table(
    organs: pd.DataFrame, agg: pd.DataFrame, metric: str, style: str = "md"
) -> tuple[list[str], list[list]]:
    """Rows of ``agg`` x organs (first-seen order) holding ``metric`` (``dice`` or ``hd95``) averaged over seeds."""
    names = list(dict.fromkeys(organs["organ"]))
    digits = 4 if metric == "dice" else 2
    lookup = dict(organs.set_index([*KEY, "organ"])[metric].items())
    headers = ["run", *names]
    rows = []
    for label, (_, row) in zip(row_labels(agg), agg.iterrows()):
        key = tuple(row[c] for c in KEY)
        rows.append([label, *(fmt.num(lookup.get((*key, name)), digits) for name in names)])
    if style == "tex":
        headers = [tex_escape(h) for h in headers]
        rows = [[tex_escape(c) for c in r] for r in rows]
    return headers, rows


def main_csv_frame(agg: pd.DataFrame) -> pd.DataFrame:
    """The main table with raw numbers (no rounding) and the p-values, for the CSV."""
    columns = [
        *KEY,
        "teacher_weaker",
        "n_seeds",
        "seeds",
        "folds",
        "fold_dice_std",
        "patch",
        "params",
        "gmacs",
        "latency_ms_median",
        "latency_ms_p90",
        "whole_ct_seconds",
        "latency_device",
        "peak_mem_mb",
        "dice_mean",
        "dice_std",
        "dice_std_over",
        "hd95_mean",
        "hd95_std",
        "hd95_std_over",
        "delta_seeds",
        "delta_dice",
        "delta_dice_std",
        "delta_hd95",
        "delta_hd95_std",
        "p_wilcoxon",
        "n_pairs",
        "wilcoxon_note",
        "n_cases",
        "n_missed",
        "n_false_positive",
        "n_both_empty",
        "train_seconds",
        "latency_threads",
        "latency_load_max",
        "latency_cpu_count",
    ]
    return agg.reindex(columns=columns)


DEPLOYMENT_HEADERS = ["run", "runtime", "precision", "params (M)", "size (MB)", "patch ms", "GMAC/s", "% of peak",
                      "max |Δlogit|", "Dice", "HD95 (mm)", "whole CT (s) CPU", "whole CT (s) GPU"]  # fmt: skip


def deployment_table(summaries: list[RunSummary], exports: dict[str, list[dict]]) -> tuple[list[str], list[list]]:
    """One row per runtime and precision of each run exported with ``bench export`` (``exports``: run id -> its
    export records, ONNX's first): PyTorch fp32 (with the run's whole-CT time, in the GPU column when the run was
    profiled on one), then every exported variant with its size, latency, achieved GMAC/s and share of the machine's
    peak in that precision, parity and accuracy."""
    rows = []
    for summary in sorted(summaries, key=lambda s: s.run_id):
        records = [r for r in exports.get(summary.run_id, []) if isinstance(r, dict)]
        if not records:
            continue
        whole = fmt.num(_number(summary.whole_ct_seconds), 1)
        on_gpu = (summary.device or "cpu").startswith("cuda")
        label = f"{row_label({'model': fmt.text(summary.model), 'kd': fmt.text(summary.kd)})} s{summary.seed}"
        params = fmt.num(_number(summary.params) / 1e6, 3)
        first = records[0]
        peaks = first.get("peak_gmacs_per_s") if isinstance(first.get("peak_gmacs_per_s"), dict) else {}
        rate = _number(first.get("torch_gmacs_per_s"))
        rows.append([label, "pytorch", "fp32", params, fmt.MISSING,
                     fmt.num(_number(first.get("torch_latency_ms_median")), 1), fmt.num(rate, 1),
                     fmt.num(100 * rate / _number(peaks.get("fp32")), 1), fmt.MISSING,
                     fmt.num(_number(summary.dice_mean), 4), fmt.num(_number(summary.hd95_mean), 2),
                     fmt.MISSING if on_gpu else whole, whole if on_gpu else fmt.MISSING])  # fmt: skip
        for record in records:
            variants = record.get("variants") if isinstance(record.get("variants"), dict) else {}
            for name, v in variants.items():
                if not isinstance(v, dict):
                    continue
                rows.append([label, fmt.text(v.get("runtime", "onnxruntime")), fmt.text(v.get("precision", name)),
                             params, fmt.num(_number(v.get("size_mb")), 2),
                             fmt.num(_number(v.get("latency_ms_median")), 1),
                             fmt.num(_number(v.get("gmacs_per_s")), 1), fmt.num(100 * _number(v.get("peak_share")), 1),
                             _sci(_number(v.get("max_abs_logit_diff"))), fmt.num(_number(v.get("dice")), 4),
                             fmt.num(_number(v.get("hd95")), 2), fmt.MISSING, fmt.MISSING])  # fmt: skip
    return list(DEPLOYMENT_HEADERS), rows


def _sci(value: float) -> str:
    return fmt.MISSING if np.isnan(value) else f"{value:.2e}"
