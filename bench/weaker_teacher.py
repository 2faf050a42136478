"""KD rows whose teacher is weaker than their student: such a row measures distillation from a worse model, and both
the report and `bench check` say so next to it."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from bench.run_summary import RunSummary


@dataclass(frozen=True)
class WeakerTeacher:
    """A (dataset, preset, model, KD, teacher) row whose teacher's test Dice is below the same student's without KD,
    both averaged over the seeds they share."""

    dataset: str
    preset: str
    model: str
    kd: str
    teacher: str
    teacher_dice: float
    student_dice: float
    seeds: tuple[int, ...]

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.dataset, self.preset, self.model, self.kd, self.teacher)

    def describe(self) -> str:
        seeds = ",".join(map(str, self.seeds))
        return (
            f"{self.dataset}/{self.preset}/{self.model}/kd={self.kd} (T: {self.teacher}): teacher weaker than student, "
            f"teacher Dice {self.teacher_dice:.4f} < {self.model} without KD {self.student_dice:.4f} (seed {seeds})"
        )


def weaker_teachers(summaries: list[RunSummary]) -> list[WeakerTeacher]:
    """Every KD row of ``summaries`` whose trained teacher, found by ``teacher_run`` among the same summaries, scores
    a lower mean test Dice than the student without KD over their common seeds. Rows whose teacher came from a
    checkpoint, or without a no-KD run of the same seed, are not judged."""
    by_id = {s.run_id: s for s in summaries}
    no_kd = {(s.dataset, s.preset, s.model, s.seed, s.fold): s.dice_mean for s in summaries if s.kd == "none"}
    pairs: dict[tuple, list[tuple[int, float, float]]] = defaultdict(list)
    for s in summaries:
        if s.kd in (None, "none"):
            continue
        teacher = by_id.get(s.teacher_run)
        student = no_kd.get((s.dataset, s.preset, s.model, s.seed, s.fold))
        if teacher is None or not _finite(student) or not _finite(teacher.dice_mean):
            continue
        key = (s.dataset, s.preset, s.model, s.kd, s.teacher or "")
        pairs[key].append((int(s.seed), float(teacher.dice_mean), float(student)))
    found = []
    for key, rows in pairs.items():
        seeds = tuple(sorted({seed for seed, _, _ in rows}))
        teacher_dice = sum(t for _, t, _ in rows) / len(rows)
        student_dice = sum(st for _, _, st in rows) / len(rows)
        if teacher_dice < student_dice:
            found.append(WeakerTeacher(*key, teacher_dice, student_dice, seeds))
    return found


def _finite(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return abs(value) < 2**63 if isinstance(value, int) else math.isfinite(value)
