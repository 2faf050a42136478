"""Report figures (matplotlib, Agg canvas), each saved as PNG and SVG and returned with the data it plots.

Figures are built on ``matplotlib.figure.Figure`` with an explicit Agg canvas rather than through pyplot, so no global
backend or figure state is touched. Each function returns None when there is nothing to plot.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bench.report import fmt
from bench.report.stats import pareto_front, significance_mark
from bench.report.tables import KEY, NO_KD
from bench.store import atomic_write_bytes

DPI = 110


@dataclass
class Plot:
    """A saved figure: ``data`` holds what was drawn, for tests and for anyone re-plotting it."""

    name: str
    title: str
    png: Path
    svg: Path
    data: dict[str, Any] = field(default_factory=dict)


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, stem: Path, name: str, title: str, data: dict[str, Any]) -> Plot:
    paths = {}
    for ext in ("png", "svg"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=ext, dpi=DPI, metadata={"Date": None} if ext == "svg" else None)
        paths[ext] = Path(f"{stem}__{name}.{ext}")
        atomic_write_bytes(paths[ext], buffer.getvalue())
    return Plot(name, title, paths["png"], paths["svg"], data)


def _model_colours(models: list[str]) -> dict[str, Any]:
    cmap = matplotlib.colormaps["tab10"]
    return {m: cmap(i % 10) for i, m in enumerate(dict.fromkeys(models))}


# Where a point's label may go, in points from the marker centre: right/left/above/below, then further out.
LABEL_OFFSETS = [
    (9, 4),
    (9, -11),
    (-9, 4),
    (-9, -11),
    (0, 12),
    (0, -18),
    (16, 14),
    (16, -22),
    (-16, 14),
    (-16, -22),
    (0, 24),
    (0, -30),
]


def _place_labels(ax, points: list[tuple[float, float, str, float]]) -> None:
    """Annotate each (x, y, text, marker radius in points) where its label overlaps no label placed before and no
    marker, trying ``LABEL_OFFSETS`` in turn (pushed out by the marker radius).

    Hand-written (a few lines) instead of the adjustText package, which is not among our dependencies for one figure.
    """
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    scale = fig.dpi / 72
    centres = [ax.transData.transform((x, y)) for x, y, _, _ in points]
    markers = [
        (cx - r * scale, cy - r * scale, cx + r * scale, cy + r * scale) for (cx, cy), (*_, r) in zip(centres, points)
    ]
    taken: list[tuple[float, float, float, float]] = []

    def clashes(box: tuple[float, float, float, float], own: int) -> bool:
        others = taken + [m for j, m in enumerate(markers) if j != own]
        return any(box[0] < o[2] and o[0] < box[2] and box[1] < o[3] and o[1] < box[3] for o in others)

    for i, (x, y, text, radius) in enumerate(points):
        for dx, dy in LABEL_OFFSETS:
            push = radius * 0.7
            offset = (dx + np.sign(dx) * push, dy + np.sign(dy) * push)
            label = ax.annotate(
                text,
                (x, y),
                textcoords="offset points",
                xytext=offset,
                fontsize=7,
                ha="left" if dx > 0 else "right" if dx < 0 else "center",
                va="center",
                zorder=4,
            )
            extent = label.get_window_extent(renderer)
            box = (extent.x0, extent.y0, extent.x1, extent.y1)
            if not clashes(box, i) or (dx, dy) == LABEL_OFFSETS[-1]:
                taken.append(box)
                break
            label.remove()


def pareto_plot(agg: pd.DataFrame, labels: list[str], stem: Path) -> Plot | None:
    """Dice against GMACs and against latency; colour per network, marker area grows with params; the Pareto front
    (no other row both cheaper and more accurate) as a staircase; legends beside the panels, never over a marker."""
    devices = ", ".join(d for d in dict.fromkeys(agg["latency_device"]) if d != fmt.MISSING) or "device not recorded"
    panels = [
        ("gmacs", "GMACs (one forward pass at the stated patch)"),
        ("latency_ms_median", f"latency, ms ({devices})"),
    ]
    colours = _model_colours(list(agg["model"]))
    biggest = agg["params"].max()
    fig = _figure(12, 4.8)
    data: dict[str, Any] = {}
    points = []
    for ax, (column, xlabel) in zip(fig.subplots(1, 2), panels):
        rows = [
            i
            for i in range(len(agg))
            if not fmt.is_missing(agg[column].iloc[i]) and not fmt.is_missing(agg["dice_mean"].iloc[i])
        ]
        x = [float(agg[column].iloc[i]) for i in rows]
        y = [float(agg["dice_mean"].iloc[i]) for i in rows]
        sizes = []
        for i, xi, yi in zip(rows, x, y):
            params = agg["params"].iloc[i]
            size = 40 + 460 * (params / biggest if biggest > 0 and not fmt.is_missing(params) else 0)
            sizes.append(size)
            marker = "o" if agg["kd"].iloc[i] in (NO_KD, fmt.MISSING) else "^"
            ax.scatter(
                [xi],
                [yi],
                s=size,
                marker=marker,
                color=colours[agg["model"].iloc[i]],
                alpha=0.75,
                edgecolors="black",
                linewidths=0.5,
                zorder=3,
            )
        front = pareto_front(x, y)
        if front:
            ax.plot(
                [x[i] for i in front],
                [y[i] for i in front],
                drawstyle="steps-post",
                color="black",
                ls="--",
                lw=1.4,
                alpha=0.8,
                zorder=2,
            )
        if x and min(x) > 0 and max(x) / min(x) > 20:
            ax.set_xscale("log")
        ax.margins(x=0.12, y=0.15)  # room for the largest marker and its label inside the axes
        if not x:
            ax.text(0.5, 0.5, "not recorded", transform=ax.transAxes, ha="center", va="center", color="grey")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Dice (mean over cases and seeds)")
        ax.grid(alpha=0.3)
        points.append((ax, [(xi, yi, labels[i], np.sqrt(size) / 2) for i, xi, yi, size in zip(rows, x, y, sizes)]))
        data[column] = {"x": x, "y": y, "labels": [labels[i] for i in rows], "front": front}
    if not any(panel["x"] for panel in data.values()):
        return None
    handles = [Line2D([], [], ls="", marker="s", ms=9, color=c, label=m) for m, c in colours.items()]
    handles += [
        Line2D([], [], ls="", marker="o", ms=8, mfc="white", mec="black", label="no KD"),
        Line2D([], [], ls="", marker="^", ms=8, mfc="white", mec="black", label="KD"),
        Line2D([], [], color="black", ls="--", lw=1.4, label="Pareto front"),
    ]
    fig.legend(handles=handles, loc="outside right center", fontsize=8, frameon=False)
    fig.suptitle("Accuracy vs efficiency (marker area ~ params)", fontsize=10)
    fig.canvas.draw()  # the final layout, so that label boxes are measured where they will be drawn
    for ax, panel_points in points:
        _place_labels(ax, panel_points)
    return _save(fig, stem, "pareto", "Accuracy-efficiency Pareto plot", data)


def organ_heatmap(organs: pd.DataFrame, agg: pd.DataFrame, labels: list[str], stem: Path) -> Plot | None:
    """Per-organ Dice (mean over seeds), rows of the main table x organs; grey cells were not recorded."""
    names = list(dict.fromkeys(organs["organ"]))
    lookup = dict(organs.set_index([*KEY, "organ"])["dice"].items())
    matrix = np.array(
        [[lookup.get((*(row[c] for c in KEY), n), np.nan) for n in names] for _, row in agg.iterrows()], dtype=float
    ).reshape(len(agg), len(names))
    keep = ~np.all(np.isnan(matrix), axis=1)
    matrix, rows = matrix[keep], [label for label, k in zip(labels, keep) if k]
    if not matrix.size:
        return None
    fig = _figure(max(4.5, 0.7 * len(names) + 3), max(2.5, 0.42 * len(rows) + 1.6))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    if matrix.size <= 400:
        for (r, c), value in np.ndenumerate(matrix):
            if not np.isnan(value):
                ax.text(
                    c,
                    r,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if value > 0.6 else "white",
                )
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    fig.colorbar(image, ax=ax, label="Dice")
    ax.set_title("Per-organ Dice (mean over seeds)", fontsize=10)
    return _save(fig, stem, "organ_dice", "Per-organ Dice heatmap", {"rows": rows, "organs": names, "matrix": matrix})


def kd_gain_plot(agg: pd.DataFrame, stem: Path) -> Plot | None:
    """Delta Dice of each KD method against the same student without KD, one panel per student; error bars are the
    std over seeds of the paired differences (with one seed there is none: the bar says "1 seed"); stars mark the
    Wilcoxon test."""
    kd_rows = agg[~agg["kd"].isin([NO_KD, fmt.MISSING]) & agg["delta_dice"].notna()]
    students = list(dict.fromkeys(kd_rows["model"]))
    if not students:
        return None
    fig = _figure(max(4.0, 2.6 * len(students)), 3.8)
    axes = np.atleast_1d(fig.subplots(1, len(students), sharey=True, squeeze=False)[0])
    data: dict[str, dict[str, float]] = {}
    for ax, student in zip(axes, students):
        rows = kd_rows[kd_rows["model"] == student]
        several_teachers = rows["teacher"].nunique() > 1
        names = [f"{r.kd} (T: {r.teacher})" if several_teachers else r.kd for r in rows.itertuples()]
        heights = rows["delta_dice"].astype(float).to_numpy()
        std = rows["delta_dice_std"].astype(float).to_numpy()
        errors = np.nan_to_num(std)
        ax.bar(range(len(names)), heights, color=["tab:green" if h >= 0 else "tab:red" for h in heights], alpha=0.8)
        if np.isfinite(std).any():  # only where several seeds give a spread: no zero-length bars for one seed
            shown = np.flatnonzero(np.isfinite(std))
            ax.errorbar(shown, heights[shown], yerr=std[shown], fmt="none", ecolor="black", capsize=3, lw=1)
        for i, (h, err, p, n) in enumerate(zip(heights, errors, rows["p_wilcoxon"], rows["delta_seeds"])):
            mark = significance_mark(None if fmt.is_missing(p) else float(p))
            seeds = f"{int(n)} seed" if int(n) == 1 else f"{int(n)} seeds"
            tip = h + err if h >= 0 else h - err
            ax.annotate(
                f"{mark}\n{seeds}" if mark else seeds,
                (i, tip),
                textcoords="offset points",
                xytext=(0, 3 if h >= 0 else -3),
                ha="center",
                va="bottom" if h >= 0 else "top",
                fontsize=7,
            )
        ax.margins(y=0.2)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(student, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        data[student] = dict(zip(names, heights.tolist()))
    axes[0].set_ylabel("Dice gain over no KD")
    fig.suptitle("KD gain per student (* p<0.05, ** p<0.01, Wilcoxon over cases)", fontsize=10)
    return _save(fig, stem, "kd_gain", "KD gain per student", data)


KD_LINE_STYLES = ["--", ":", "-.", (0, (5, 1, 1, 1))]


def _family_styles(runs: dict[str, tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """Line colour and style per run label: one hue per student (tab10), no KD solid in the full colour, each KD
    method of that student a lighter shade of the same hue with its own dash pattern."""
    models = _model_colours([model for model, _ in runs.values()])
    styles = {}
    for label, (model, kd) in runs.items():
        kds = sorted({k for m, k in runs.values() if m == model and k not in (NO_KD, fmt.MISSING)})
        base = np.array(matplotlib.colors.to_rgb(models[model]))
        if kd in (NO_KD, fmt.MISSING):
            styles[label] = {"color": tuple(base), "ls": "-"}
        else:
            k = kds.index(kd)
            mix = 0.25 + 0.35 * k / max(1, len(kds) - 1) if len(kds) > 1 else 0.35
            styles[label] = {"color": tuple(base + (1 - base) * mix), "ls": KD_LINE_STYLES[k % len(KD_LINE_STYLES)]}
    return styles


def training_curves(
    logs: dict[str, pd.DataFrame], stem: Path, runs: dict[str, tuple[str, str]] | None = None
) -> Plot | None:
    """Training loss and validation Dice against iteration, one line per run; ``runs`` (label -> model, KD method)
    groups a student with its KD variants in one hue family (see :func:`_family_styles`)."""
    data: dict[str, dict[str, tuple[list[float], list[float]]]] = {"loss": {}, "val_dice": {}}
    for label, log in logs.items():
        if "iteration" not in log:
            continue
        for column in data:
            if column in log:
                points = log[["iteration", column]].apply(pd.to_numeric, errors="coerce").dropna()
                if len(points):
                    data[column][label] = (points["iteration"].tolist(), points[column].tolist())
    if not data["loss"] and not data["val_dice"]:
        return None
    runs = runs or {label: (label, NO_KD) for label in logs}
    styles = _family_styles({label: runs.get(label, (label, NO_KD)) for label in logs})
    order = sorted(
        logs,
        key=lambda label: (*((runs.get(label, (label, NO_KD))[0], runs.get(label, (label, NO_KD))[1] != NO_KD)), label),
    )
    fig = _figure(12, 4.4)
    ax_loss, ax_dice = fig.subplots(1, 2)
    for label in order:
        if label in data["loss"]:
            ax_loss.plot(*data["loss"][label], lw=1.2, label=label, **styles[label])
        if label in data["val_dice"]:
            ax_dice.plot(*data["val_dice"][label], marker="o", ms=3, lw=1.2, label=label, **styles[label])
    losses = [v for _, y in data["loss"].values() for v in y]
    if losses and min(losses) > 0 and max(losses) / min(losses) > 10:
        ax_loss.set_yscale("log")
    for ax, title in ((ax_loss, "training loss"), (ax_dice, "validation Dice (at each checkpoint)")):
        ax.set_xlabel("iteration")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    handles, names = (ax_dice if data["val_dice"] else ax_loss).get_legend_handles_labels()
    fig.legend(handles, names, loc="outside right center", fontsize=7, frameon=False)
    return _save(fig, stem, "training", "Training curves", data)


def case_dice_boxplot(values: dict[str, list[float]], stem: Path) -> Plot | None:
    """Box plot of per-case mean foreground Dice per row (cases of all seeds pooled), the points drawn on top."""
    values = {label: v for label, v in values.items() if v}
    if not values:
        return None
    fig = _figure(max(4.5, 0.9 * len(values) + 2), 4.0)
    ax = fig.subplots()
    ax.boxplot(list(values.values()), tick_labels=list(values), showfliers=False)
    rng = np.random.default_rng(0)
    for i, v in enumerate(values.values(), start=1):
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(v)), v, s=10, color="tab:blue", alpha=0.6, zorder=3)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.set_ylabel("per-case mean foreground Dice")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Per-case Dice", fontsize=10)
    return _save(fig, stem, "case_dice", "Per-case Dice box plots", values)
