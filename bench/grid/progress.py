"""Progress of a ``bench run`` grid: a numbered line per run as it starts, an estimate of the time left from the
runs finished so far, and a summary table at the end.

The estimate for a run still to come is the mean wall time of the finished runs of the same model and kind (with or
without KD: a KD run also runs the teacher forward), else of all finished runs; runs already complete count as 0.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tabulate import tabulate

from bench.console import duration, note

if TYPE_CHECKING:
    from bench.run_summary import RunSummary


@dataclass(frozen=True)
class PlannedRun:
    """One run of the grid, in the order the grid runs them."""

    run_id: str
    model: str
    kd: str
    seed: int
    teacher: str | None  # the teacher of a KD run
    is_teacher: bool = False  # the teacher's own training run
    fold: int = 0

    @property
    def what(self) -> str:
        """``unet3d (teacher)``, ``lcovnet``, ``lcovnet + ca from unet3d``."""
        if self.is_teacher:
            return f"{self.model} (teacher)"
        if self.kd == "none":
            return self.model
        return f"{self.model} + {self.kd} from {self.teacher}"

    @property
    def label(self) -> str:
        """``lcovnet + ca from unet3d, seed 0`` (``, fold 2`` for a fold other than 0)."""
        return f"{self.what}, seed {self.seed}" + (f", fold {self.fold}" if self.fold else "")

    @property
    def kind(self) -> tuple[str, bool]:
        return self.model, self.kd != "none"


@dataclass
class _Outcome:
    status: str
    seconds: float | None = None
    dice: float | None = None
    hd95: float | None = None


class GridProgress:
    """Tells the user where the grid stands, one note (``bench.console``) per run started, skipped or finished."""

    def __init__(self, plan: list[PlannedRun], complete: set[str]) -> None:
        self.plan = plan
        self.by_id = {p.run_id: i for i, p in enumerate(plan)}
        self.complete = set(complete)
        self.outcomes: dict[str, _Outcome] = {}
        self._started: dict[str, float] = {}

    def short_label(self, run_id: str) -> str:
        """``lcovnet + ca from unet3d (seed 0)``: the training bar and the resume message."""
        run = self.plan[self.by_id[run_id]]
        return f"{run.what} (seed {run.seed})"

    def start(self, run_id: str) -> None:
        self._started[run_id] = time.perf_counter()
        note(f"{self._prefix(run_id)} {self.plan[self.by_id[run_id]].label}")

    def skipped(self, run_id: str, summary: RunSummary) -> None:
        self.outcomes[run_id] = _Outcome("complete, skipped", None, summary.dice_mean, summary.hd95_mean)
        note(
            f"{self._prefix(run_id)} {self.plan[self.by_id[run_id]].label}: complete, skipped "
            "(use --force to run it again)"
        )

    def finished(self, run_id: str, summary: RunSummary, resumed_from: int = 0) -> None:
        seconds = time.perf_counter() - self._started.pop(run_id)
        status = f"resumed at it. {resumed_from}" if resumed_from else "trained"
        self.outcomes[run_id] = _Outcome(status, seconds, summary.dice_mean, summary.hd95_mean)
        note(
            f"done in {duration(seconds)}: Dice {_num(summary.dice_mean, 4)}, "
            f"HD95 {_num(summary.hd95_mean, 2)} mm; {self.eta()}"
        )

    def _prefix(self, run_id: str) -> str:
        return f"[{self.by_id[run_id] + 1}/{len(self.plan)}]"

    def eta(self) -> str:
        """``3/7 runs done, about 12m30s left (estimated from 3 trained runs)``."""
        trained = [(self.plan[self.by_id[r]].kind, o.seconds) for r, o in self.outcomes.items() if o.seconds]
        left = [p for p in self.plan if p.run_id not in self.outcomes and p.run_id not in self.complete]
        done = f"{len(self.outcomes)}/{len(self.plan)} runs done"
        if not left:
            return done
        if not trained:
            return f"{done}, {len(left)} to train"
        overall = sum(s for _, s in trained) / len(trained)
        estimate = 0.0
        for run in left:
            same = [s for kind, s in trained if kind == run.kind]
            estimate += sum(same) / len(same) if same else overall
        return (
            f"{done}, about {duration(estimate)} left for {len(left)} more "
            f"(estimated from {len(trained)} trained run{'s' if len(trained) > 1 else ''})"
        )

    def table(self) -> str:
        """The summary printed at the end: one row per run of the grid."""
        rows = []
        for run in self.plan:
            out = self.outcomes.get(run.run_id, _Outcome("not run"))
            rows.append([run.label, out.status, _num(out.dice, 4), _num(out.hd95, 2),
                         "-" if out.seconds is None else duration(out.seconds)])  # fmt: skip
        return tabulate(rows, headers=["run", "status", "Dice", "HD95 (mm)", "time"], disable_numparse=True)


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"
