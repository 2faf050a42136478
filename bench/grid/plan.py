"""Planning: a grid spec becomes the list of cells in the order the inline executor runs them.

For each seed: the teacher (when distilling and no ``--teacher-checkpoint`` is given), then for each model its run
without KD and one run per KD method. A KD cell needs its teacher's cell (the teacher's weights) and, with
``kd_init = "student"``, the model's no-KD cell (its starting weights). A run that appears twice (the teacher is also
one of ``--models``) is planned once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bench.store import make_run_id
from bench.training.progress import PlannedRun

if TYPE_CHECKING:
    from bench.training.runner import GridSpec


@dataclass
class Cell:
    """One run of the grid: what to train, and which other cells it waits for."""

    run_id: str
    model: str
    kd: str  # "none" for a run without KD
    seed: int
    teacher: str | None = None  # the teacher model of a KD cell
    teacher_run: str | None = None  # the teacher cell's run id; None when the teacher comes from a checkpoint
    init_run: str | None = None  # the no-KD cell whose weights start this KD cell (kd_init = "student")
    is_teacher: bool = False  # the teacher's own training run
    model_kwargs: dict = field(default_factory=dict)  # factory arguments over the preset's (issue 14)
    kd_kwargs: dict = field(default_factory=dict)  # arguments of kd_methods.create_kd_method (issue 14)

    @property
    def needs(self) -> tuple[str, ...]:
        """Run ids of the cells that must be complete before this one starts."""
        return tuple(dict.fromkeys(r for r in (self.teacher_run, self.init_run) if r is not None))

    @property
    def planned(self) -> PlannedRun:
        return PlannedRun(self.run_id, self.model, self.kd, self.seed, self.teacher, self.is_teacher)

    @property
    def label(self) -> str:
        return self.planned.label


def cell_run_id(model: str, kd: str, teacher: str | None, seed: int, dataset: str, preset_hash: str,
                model_kwargs: dict | None = None, kd_kwargs: dict | None = None) -> str:  # fmt: skip
    """The store's run id; cells with their own model or KD arguments get ``__a-<hash of the arguments>`` appended,
    so the ids of cells without them stay those of earlier versions."""
    run_id = make_run_id(model, kd, teacher, seed, dataset, preset_hash)
    extra = {k: v for k, v in (("model", model_kwargs), ("kd", kd_kwargs)) if v}
    if extra:
        digest = hashlib.sha1(json.dumps(extra, sort_keys=True, default=str).encode()).hexdigest()[:8]
        run_id += f"__a-{digest}"
    return run_id


def plan_cells(spec: GridSpec, dataset: str, teacher_name: str) -> list[Cell]:
    """Every cell of ``spec`` on data set ``dataset``, in the order of training (see the module docstring)."""
    preset_hash = spec.config.hash()
    distil = any(k != "none" for k in spec.kds)
    teacher_trained = distil and spec.teacher_checkpoint is None
    cells: dict[str, Cell] = {}

    def add(cell: Cell) -> Cell:
        return cells.setdefault(cell.run_id, cell)

    for seed in spec.seeds:
        teacher_run = None
        if teacher_trained:
            run_id = cell_run_id(teacher_name, "none", None, seed, dataset, preset_hash)
            teacher_run = add(Cell(run_id, teacher_name, "none", seed, is_teacher=True)).run_id
        for name in spec.models:
            none = add(Cell(cell_run_id(name, "none", None, seed, dataset, preset_hash), name, "none", seed))
            for kd in spec.kds:
                if kd == "none":
                    continue
                init_run = none.run_id if spec.config.kd_init == "student" else None
                run_id = cell_run_id(name, kd, teacher_name, seed, dataset, preset_hash)
                add(Cell(run_id, name, kd, seed, teacher_name, teacher_run, init_run))
    return list(cells.values())
