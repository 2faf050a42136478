"""What distillation did, per student: the gap between its teacher and the student trained without KD, and for each
KD method the gain over no KD, the share of the gap it closes and a paired test, said in words too.

Runs are paired by seed and fold: a KD run, the same student without KD (same dataset, preset, seed and fold) and
the teacher run it was taught by (``teacher_run``; a teacher with its own protocol sits in another preset group, so
teachers are looked up among all runs). The test pairs (seed, case): each test case's mean foreground Dice in the KD
run against the run without KD of the same seed, so that every seed adds its cases.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.report import fmt
from bench.report.stats import paired_wilcoxon
from bench.report.tables import NO_KD

SIGNIFICANT = 0.05  # the two-sided Wilcoxon p-value below which a gain is called significant
COLUMNS = ["dataset", "preset", "model", "teacher", "kd", "pairs", "teacher_dice", "student_dice", "gap", "dice",
           "gain", "gain_sd", "closed", "p_wilcoxon", "n_pairs", "note"]  # fmt: skip
NOTE = (
    "Per student: gap = teacher Dice - the student's without KD; gain = the KD run's Dice - the student's without KD "
    "(± the standard deviation of the per-seed gains); closed = gain / gap; p: two-sided Wilcoxon signed-rank test "
    "over (seed, case) pairs of per-case mean foreground Dice against the student without KD. Runs are paired by seed "
    "and fold; the teacher is the run each KD run was taught by."
)


def empty() -> pd.DataFrame:
    return pd.DataFrame(columns=COLUMNS)


def kd_effects(runs: pd.DataFrame, case_dice: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, preset, student, teacher, KD method) with the columns of :data:`COLUMNS`."""
    by_id = {run.run_id: run for _, run in runs.iterrows()}
    controls = {_pairing(run): run for _, run in runs[runs.kd == NO_KD].iterrows()}
    rows = []
    taught = runs[~runs.kd.isin([NO_KD, fmt.MISSING])]
    for key, group in taught.groupby(["dataset", "preset", "model", "teacher", "kd"], sort=True):
        triples = [(run.seed, by_id[run.teacher_run], controls[_pairing(run)], run) for _, run in group.iterrows()
                   if _pairing(run) in controls and run.teacher_run in by_id]  # fmt: skip
        rows.append(_row(dict(zip(["dataset", "preset", "model", "teacher", "kd"], key)), triples, case_dice))
    return pd.DataFrame(rows, columns=COLUMNS) if rows else empty()


def _row(key: dict[str, Any], triples: list, case_dice: pd.DataFrame) -> dict[str, Any]:
    row: dict[str, Any] = {**key, "pairs": len(triples), "n_pairs": 0, "note": ""}
    if not triples:
        return {**row, "note": "no run of the same student without KD, or no teacher run, with the same seed"}
    frame = pd.DataFrame([(seed, _dice(t), _dice(c), _dice(k)) for seed, t, c, k in triples],
                         columns=["seed", "teacher", "control", "kd"])  # fmt: skip
    per_seed = frame.groupby("seed").mean()
    gains = per_seed["kd"] - per_seed["control"]
    row.update(
        teacher_dice=per_seed["teacher"].mean(),
        student_dice=per_seed["control"].mean(),
        dice=per_seed["kd"].mean(),
        gap=(per_seed["teacher"] - per_seed["control"]).mean(),
        gain=gains.mean(),
        gain_sd=gains.std(ddof=1) if len(gains) > 1 else np.nan,
    )
    row["closed"] = row["gain"] / row["gap"] if row["gap"] > 0 else np.nan
    treated = _case_values(case_dice, [(seed, k.run_id) for seed, _, _, k in triples])
    control = _case_values(case_dice, [(seed, c.run_id) for seed, _, c, _ in triples])
    test = paired_wilcoxon(treated, control)
    row.update(p_wilcoxon=np.nan if test.p is None else test.p, n_pairs=test.n, note=test.note)
    return row


def _pairing(run: pd.Series) -> tuple:
    return run.dataset, run.preset, run.model, run.seed, run.fold


def _dice(run: pd.Series) -> float:
    return float(run["dice_mean"])


def _case_values(case_dice: pd.DataFrame, runs: list[tuple[Any, str]]) -> pd.Series:
    """(seed, case) -> the case's mean foreground Dice in the run of that seed."""
    seeds = dict((run_id, seed) for seed, run_id in runs)
    chosen = case_dice[case_dice.run_id.isin(set(seeds))]
    index = pd.MultiIndex.from_arrays([chosen.run_id.map(seeds), chosen.case], names=["seed", "case"])
    return pd.Series(chosen["case_dice"].to_numpy(), index=index).groupby(level=[0, 1]).mean()


def effect_table(effects: pd.DataFrame) -> tuple[list[str], list[list]]:
    """(headers, rows) of the KD effect table for the report."""
    headers = ["student", "teacher", "KD", "seeds", "teacher Dice", "no-KD Dice", "gap", "KD Dice", "gain",
               "closed", "p (pairs)"]  # fmt: skip
    rows = []
    for _, r in effects.iterrows():
        p = "-" if fmt.is_missing(r["p_wilcoxon"]) else f"{r['p_wilcoxon']:.2g} ({int(r['n_pairs'])})"
        closed = "-" if fmt.is_missing(r["closed"]) else f"{100 * r['closed']:.0f}%"
        rows.append([r["model"], r["teacher"], r["kd"], str(int(r["pairs"])), fmt.num(r["teacher_dice"], 4),
                     fmt.num(r["student_dice"], 4), fmt.num(r["gap"], 4, signed=True), fmt.num(r["dice"], 4),
                     fmt.mean_pm(r["gain"], r["gain_sd"], 4) if not fmt.is_missing(r["gain"]) else "-", closed,
                     p])  # fmt: skip
    return headers, rows


def effect_words(effects: pd.DataFrame) -> list[str]:
    """One sentence per (student, teacher): the gap, and which methods beat no KD significantly and which did not."""
    lines = []
    for (model, teacher), rows in effects.groupby(["model", "teacher"], sort=True):
        rows = rows[rows.pairs > 0]
        if rows.empty:
            continue
        gap = rows["gap"].mean()
        head = (
            f"{model} (teacher {teacher}): the teacher is stronger by {gap:.3f} Dice"
            if gap > 0
            else f"{model} (teacher {teacher}): the teacher is not stronger than the student without KD "
            f"({gap:+.3f} Dice), so these rows measure distillation from a model no better than the student"
        )
        better = [r for _, r in rows.iterrows() if _significant(r) and r["gain"] > 0]
        worse = [r for _, r in rows.iterrows() if _significant(r) and r["gain"] < 0]
        neutral = [r["kd"] for _, r in rows.iterrows() if not _significant(r)]
        parts = [head]
        if better:
            parts.append("beat no KD significantly: " + ", ".join(_said(r) for r in better))
        if worse:
            parts.append("significantly worse than no KD: " + ", ".join(_said(r) for r in worse))
        if neutral:
            parts.append(f"no significant difference (p >= {SIGNIFICANT:g}): " + ", ".join(neutral))
        lines.append("; ".join(parts) + ".")
    return lines


def _significant(row: pd.Series) -> bool:
    return not fmt.is_missing(row["p_wilcoxon"]) and float(row["p_wilcoxon"]) < SIGNIFICANT


def _said(row: pd.Series) -> str:
    closed = "" if fmt.is_missing(row["closed"]) else f", {100 * row['closed']:.0f}% of the gap"
    return f"{row['kd']} ({row['gain']:+.3f}{closed}, p={row['p_wilcoxon']:.2g})"
