"""The ablation view: Dice and HD95 against each swept argument of a KD method or a model (``bench run --kd
'ca:weight=0.05|0.1|0.2'``), one table and one figure per swept key.

The arguments come from the canonical component text that the aggregated rows carry in ``model`` and ``kd``
(``lcovnet+ca:weight=0.1``, see :mod:`bench.components.syntax`), so the view is built from the report's aggregated frame
without re-reading runs. Runs of stores from before arguments existed carry bare names and give no ablation.

- KD ablation: per student (its full model text) and KD method, a key set to more than one value. The rows that set
  the key, against its value; the student without KD is the reference (a horizontal line, first table row). Other
  arguments of the method and the teacher, where they vary, tell the lines apart.
- Model ablation: per model name, a key of its own arguments set to more than one value. Each KD method (no KD
  included) is one line, since the student without KD changes with the value: no single reference line.

Rows that do not set the swept key (the method's default) are left out of that key's ablation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from bench.components.syntax import format_value, parse_component
from bench.errors import BenchError
from bench.path_names import slugify
from bench.report import fmt
from bench.report.plots import Plot, _figure, _save
from bench.report.tables import NO_KD, row_label, tex_escape

Kind = Literal["kd", "model"]
HEADERS = ["run", "seeds", "Dice", "HD95 (mm)", "ΔDice"]
TEX_DELTA = r"$\Delta$Dice"
NOTE = (
    "Dice and HD95: mean over cases, ± the standard deviation over seeds (shown only where a row has several seeds). "
    "ΔDice: against the same student without KD on the same seeds."
)
CSV_COLUMNS = ["dataset", "preset", "kind", "method", "key", "student", "value", "series", "reference", "model",
               "kd", "teacher", "n_seeds", "seeds", "dice_mean", "dice_std", "hd95_mean", "hd95_std", "delta_dice",
               "delta_hd95", "p_wilcoxon"]  # fmt: skip


@dataclass
class Ablation:
    """One swept key: ``points`` are the aggregated rows that set it (with ``value``, ``value_text`` and ``series``
    columns added, sorted by series then value); ``reference`` is the student's row without KD (KD ablations)."""

    dataset: str
    preset: str
    kind: Kind
    method: str  # the KD method (``ca``, ``ca+ms``) or the model's name
    key: str  # ``weight``; ``ca.weight`` in a composition
    student: str  # the student's model text (KD ablations); "" for a model ablation
    numeric: bool
    points: pd.DataFrame
    reference: pd.Series | None = None
    plot: Plot | None = None

    @property
    def title(self) -> str:
        title = f"Ablation: {self.method} {self.key}"
        return f"{title} (student {self.student})" if self.student else title

    @property
    def name(self) -> str:
        """File-name part: ``ablation__kd__lcovnet__ca__weight``."""
        parts = ["ablation", self.kind, *([self.student] if self.student else []), self.method, self.key]
        return "__".join(slugify(p) for p in parts)


def component_args(text: str, kind: Kind) -> tuple[str, dict[str, Any]] | None:
    """The name and flat arguments of a canonical component text (``ca:weight=0.1+ms`` -> ``("ca+ms",
    {"ca.weight": 0.1})``); None for a text that is not a component (``-``, a missing value)."""
    try:
        component = parse_component(text, kind, kind)
    except BenchError:
        return None
    if not component.is_composition:
        return component.name, dict(component.kwargs)
    return component.name, {f"{p.name}.{k}": v for p in component.parts for k, v in p.kwargs.items()}


def find_ablations(agg: pd.DataFrame, dataset: str, preset: str) -> list[Ablation]:
    """Every KD and model ablation of one dataset/preset group's aggregated rows (``tables.aggregate``)."""
    rows = agg.reset_index(drop=True)
    found = [*_kd_ablations(rows), *_model_ablations(rows)]
    return [Ablation(dataset, preset, *fields) for fields in found]


def _kd_ablations(rows: pd.DataFrame) -> list[tuple]:
    """Per student and KD method, each swept key with its points and the student's row without KD."""
    kds = {i: component_args(kd, "kd") for i, kd in enumerate(rows["kd"])}
    kds = {i: kd for i, kd in kds.items() if kd is not None and kd[0] != NO_KD}
    out = []
    for student, method in dict.fromkeys((rows.at[i, "model"], kd[0]) for i, kd in kds.items()):
        args = {i: kd[1] for i, kd in kds.items() if rows.at[i, "model"] == student and kd[0] == method}
        base = rows[(rows["model"] == student) & (rows["kd"] == NO_KD)]
        reference = base.iloc[0] if len(base) else None
        for key, points in _swept(rows, args, {}):
            out.append(("kd", method, key, student, _numeric(points), points, reference))
    return out


def _model_ablations(rows: pd.DataFrame) -> list[tuple]:
    """Per model name, each swept key of its own arguments; each KD method (no KD included) is one series."""
    models = {i: component_args(model, "model") for i, model in enumerate(rows["model"])}
    models = {i: model for i, model in models.items() if model is not None}
    out = []
    for name in dict.fromkeys(model[0] for model in models.values()):
        args = {i: model[1] for i, model in models.items() if model[0] == name}
        kd_of = {i: "no KD" if rows.at[i, "kd"] == NO_KD else rows.at[i, "kd"] for i in args}
        for key, points in _swept(rows, args, kd_of):
            out.append(("model", name, key, "", _numeric(points), points))
    return out


def _swept(rows: pd.DataFrame, args: dict[int, dict[str, Any]], first: dict[int, str]) -> list:
    """``(key, points)`` for each key that the rows in ``args`` (row index -> arguments) set to more than one value;
    ``first`` (row index -> text) starts a row's series label (the KD method, for model ablations)."""
    keys = dict.fromkeys(k for kwargs in args.values() for k in kwargs)
    out = []
    for key in keys:
        having = [i for i in args if key in args[i]]
        if len({format_value(args[i][key]) for i in having}) < 2:
            continue
        teachers = rows.loc[having, "teacher"].nunique() > 1
        points = rows.loc[having].copy()
        points["value"] = [args[i][key] for i in having]
        points["value_text"] = [format_value(args[i][key]) for i in having]
        points["series"] = [
            _series(first.get(i), args[i], key, rows.at[i, "teacher"] if teachers else None) for i in having
        ]
        out.append((key, _sorted(points)))
    return out


def _series(first: str | None, args: dict[str, Any], key: str, teacher: str | None) -> str:
    """What tells a line apart: ``first``, the other arguments (``tau=2``) and the teacher where several are used."""
    parts = [*([first] if first else []), *(f"{k}={format_value(v)}" for k, v in sorted(args.items()) if k != key)]
    if teacher is not None:
        parts.append(f"T: {teacher}")
    return ", ".join(parts)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numeric(points: pd.DataFrame) -> bool:
    return all(_is_number(v) for v in points["value"])


def _sorted(points: pd.DataFrame) -> pd.DataFrame:
    """By series, then by value (numbers by size, other values by their text)."""
    numeric = _numeric(points)
    order = sorted(
        range(len(points)),
        key=lambda i: (points["series"].iloc[i], float(points["value"].iloc[i]) if numeric else 0.0,
                       points["value_text"].iloc[i]),
    )  # fmt: skip
    return points.iloc[order].reset_index(drop=True)


def _seed_std(row: pd.Series, metric: str) -> float:
    """The spread over seeds, NaN where the row has one seed (its recorded std is then over cases)."""
    return row[f"{metric}_std"] if row.get(f"{metric}_std_over") == "seeds" else np.nan


def table(ablation: Ablation, style: str = "md") -> tuple[list[str], list[list]]:
    """Headers and formatted rows: the reference without KD first (value ``no KD``), then one row per point."""
    pm = r"$\pm$" if style == "tex" else "±"
    with_teacher = ablation.points["teacher"].nunique() > 1
    rows = []
    if ablation.reference is not None:
        rows.append(["no KD (reference)", *_cells(ablation.reference, pm, False)])
    for _, row in ablation.points.iterrows():
        rows.append([row["value_text"], *_cells(row, pm, with_teacher)])
    headers = [ablation.key, *HEADERS]
    if style == "tex":
        headers = [tex_escape(h) for h in headers[:-1]] + [TEX_DELTA]
        rows = [[r"$\pm$".join(tex_escape(part) for part in cell.split(r"$\pm$")) for cell in r] for r in rows]
    return headers, rows


def _cells(row: pd.Series, pm: str, with_teacher: bool) -> list[str]:
    n = int(row["n_seeds"])
    return [
        row_label(row, with_teacher),
        f"{n} seed" if n == 1 else f"{n} seeds",
        fmt.mean_pm(row["dice_mean"], _seed_std(row, "dice"), 4, pm),
        fmt.mean_pm(row["hd95_mean"], _seed_std(row, "hd95"), 2, pm),
        fmt.num(row["delta_dice"], 4, signed=True),
    ]


def csv_frame(ablation: Ablation) -> pd.DataFrame:
    """Raw numbers of the table, the reference row included (``reference`` true, no ``value``)."""
    frames = []
    if ablation.reference is not None:
        frames.append(pd.DataFrame([ablation.reference]).assign(value_text="", series="", reference=True))
    frames.append(ablation.points.assign(reference=False))
    frame = pd.concat(frames, ignore_index=True)
    frame["value"] = frame["value_text"]
    for metric in ("dice", "hd95"):
        frame[f"{metric}_std"] = [_seed_std(row, metric) for _, row in frame.iterrows()]
    frame = frame.assign(
        dataset=ablation.dataset, preset=ablation.preset, kind=ablation.kind, method=ablation.method,
        key=ablation.key, student=ablation.student,
    )  # fmt: skip
    return frame.reindex(columns=CSV_COLUMNS)


def ablation_plot(ablation: Ablation, stem: Path) -> Plot | None:
    """Mean Dice against the swept value, one line per series, error bars the std over seeds where there are
    several; the student without KD as a dashed horizontal line (a band for its std over seeds). Non-numeric values
    are evenly spaced categories."""
    points = ablation.points[ablation.points["dice_mean"].notna()]
    if points.empty:
        return None
    categories = list(dict.fromkeys(sorted(ablation.points["value_text"])))
    fig = _figure(6.4, 4.2)
    ax = fig.subplots()
    data: dict[str, Any] = {"series": {}, "reference": None}
    for series, rows in points.groupby("series", sort=False):
        x = [float(v) for v in rows["value"]] if ablation.numeric else [categories.index(t) for t in rows["value_text"]]
        y = rows["dice_mean"].astype(float).tolist()
        err = [_seed_std(row, "dice") for _, row in rows.iterrows()]
        label = series or ablation.method
        line = "-" if ablation.numeric else "none"  # categories are not joined: there is nothing between them
        ax.errorbar(x, y, yerr=np.nan_to_num(err), marker="o", ms=5, capsize=3, lw=1.2, ls=line, label=label)
        data["series"][label] = {"x": x, "dice": y, "dice_std": err}
    if ablation.reference is not None and not fmt.is_missing(ablation.reference["dice_mean"]):
        value = float(ablation.reference["dice_mean"])
        ax.axhline(value, color="black", ls="--", lw=1, label=f"{ablation.student} without KD ({value:.4f})")
        spread = _seed_std(ablation.reference, "dice")
        if not fmt.is_missing(spread):
            ax.axhspan(value - spread, value + spread, color="black", alpha=0.08, lw=0)
        data["reference"] = value
    if ablation.numeric:
        values = [float(v) for v in points["value"]]
        if min(values) > 0 and max(values) / min(values) >= 10:
            ax.set_xscale("log")
    else:
        ax.set_xticks(range(len(categories)), categories)
        ax.set_xlim(-0.5, len(categories) - 0.5)
    ax.margins(y=0.1)
    ax.set_xlabel(ablation.key)
    ax.set_ylabel("mean Dice (± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(ablation.title, fontsize=10)
    return _save(fig, stem, ablation.name, ablation.title, data)
