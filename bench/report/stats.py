"""Statistics for the report: per-case foreground Dice, the paired Wilcoxon test and the Pareto front."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon


def case_mean_dice(per_case: pd.DataFrame) -> pd.DataFrame:
    """One row per (run_id, case): the mean Dice over foreground labels (label 0 excluded), NaN labels skipped.

    Both-empty labels carry NaN Dice and so do not count; a case whose labels are all NaN gets NaN.
    """
    foreground = per_case[per_case["label"].fillna(-1) != 0]
    out = foreground.groupby(["run_id", "case"], sort=False)["dice"].mean().reset_index()
    return out.rename(columns={"dice": "case_dice"})


@dataclass(frozen=True)
class PairedTest:
    """Two-sided Wilcoxon signed-rank test; ``p`` is None when it cannot be computed (``note`` says why)."""

    p: float | None
    n: int
    note: str = ""


def paired_wilcoxon(treated: pd.Series, control: pd.Series) -> PairedTest:
    """Wilcoxon signed-rank test of ``treated - control`` over the index values present (non-NaN) in both.

    scipy warns and returns NaN when every difference is zero; that case is reported as p = 1 (no difference).
    """
    pairs = pd.concat([treated.rename("t"), control.rename("c")], axis=1, join="inner").dropna()
    n = len(pairs)
    if n < 2:
        return PairedTest(None, n, f"n={n} paired cases; need at least 2")
    diff = (pairs["t"] - pairs["c"]).to_numpy(dtype=float)
    if np.all(diff == 0):
        return PairedTest(1.0, n, "all differences are zero")
    p = float(wilcoxon(diff).pvalue)
    return PairedTest(p if math.isfinite(p) else None, n)


def significance_mark(p: float | None) -> str:
    if p is None:
        return ""
    return "**" if p < 0.01 else "*" if p < 0.05 else ""


def pareto_front(cost: list[float], score: list[float]) -> list[int]:
    """Indices of the points no other point beats (lower-or-equal cost and higher score), by increasing cost."""
    order = sorted(range(len(cost)), key=lambda i: (cost[i], -score[i]))
    front: list[int] = []
    best = -math.inf
    for i in order:
        if score[i] > best:
            front.append(i)
            best = score[i]
    return front
