"""Planning: a grid spec becomes the list of cells in the order the inline executor runs them.

For each fold and seed: the teachers (when distilling and no ``--teacher-checkpoint`` is given), then for each model
its run without KD and one run per KD method and teacher. A KD cell needs its teacher's cell (the teacher's weights)
and, with ``kd_init = "student"``, the model's no-KD cell (its starting weights). A run that appears twice (a teacher
trained with the students' protocol is also one of ``--models``) is planned once; a teacher with its own protocol
(``spec.teacher_config``) is a run of its own, and the KD cells it teaches carry that protocol's hash in their id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from bench.components.syntax import Component, parse_component
from bench.grid.progress import PlannedRun
from bench.grid.spec import GridSpec
from bench.store import make_run_id


@dataclass
class Cell:
    """One run of the grid: what to train, and which other cells it waits for."""

    run_id: str
    model: str
    kd: str  # "none" for a run without KD
    seed: int
    teacher: str | None = None  # the teacher model of a KD cell
    fold: int = 0  # the cross-validation fold: which cases it trains, validates and is tested on
    teacher_run: str | None = None  # the teacher cell's run id; None when the teacher comes from a checkpoint
    init_run: str | None = None  # the no-KD cell whose weights start this KD cell (kd_init = "student")
    is_teacher: bool = False  # the teacher's own training run
    own_protocol: bool = False  # a teacher cell trained with spec.teacher_config instead of the students' config
    model_kwargs: dict = field(default_factory=dict)  # factory arguments over the preset's (`--models name:k=v`)
    kd_kwargs: dict = field(default_factory=dict)  # arguments of kd_methods.create_kd_method (`--kd name:k=v`)
    teacher_kwargs: dict = field(default_factory=dict)  # the teacher's factory arguments (`--teacher name:k=v`)

    @property
    def needs(self) -> tuple[str, ...]:
        """Run ids of the cells that must be complete before this one starts."""
        return tuple(dict.fromkeys(r for r in (self.teacher_run, self.init_run) if r is not None))

    @property
    def planned(self) -> PlannedRun:
        return PlannedRun(self.run_id, self.model_label, self.kd_label, self.seed, self.teacher_label, self.is_teacher,
                          self.fold)  # fmt: skip

    @property
    def model_label(self) -> str:
        """The model with its own arguments in the component syntax (``nnunet:base_channels=16``)."""
        return str(Component(self.model, self.model_kwargs))

    @property
    def kd_label(self) -> str:
        return str(Component(self.kd, self.kd_kwargs))

    @property
    def teacher_label(self) -> str | None:
        return None if self.teacher is None else str(Component(self.teacher, self.teacher_kwargs))

    @property
    def label(self) -> str:
        return self.planned.label


def cell_run_id(model: str, kd: str, teacher: str | None, seed: int, dataset: str, preset_hash: str,
                model_kwargs: dict | None = None, kd_kwargs: dict | None = None,
                teacher_protocol: str | None = None, fold: int = 0) -> str:  # fmt: skip
    """The store's run id; cells with their own model or KD arguments, or distilled from a teacher with its own
    protocol (``teacher_protocol``: that config's hash), get ``__a-<hash of these>`` appended, and cells of a fold
    other than 0 ``__f<fold>``, so the ids of fold-0 cells without them stay those of earlier versions."""
    run_id = make_run_id(model, kd, teacher, seed, dataset, preset_hash)
    if fold:
        run_id += f"__f{int(fold)}"
    parts = (("model", model_kwargs), ("kd", kd_kwargs), ("teacher_protocol", teacher_protocol))
    extra = {k: v for k, v in parts if v}
    if extra:
        digest = hashlib.sha1(json.dumps(extra, sort_keys=True, default=str).encode()).hexdigest()[:8]
        run_id += f"__a-{digest}"
    return run_id


def plan_cells(spec: GridSpec, dataset: str, teacher_texts: list[str] | None = None) -> list[Cell]:
    """Every cell of ``spec`` on data set ``dataset``, in the order of training (see the module docstring).

    ``spec.models``, ``spec.kds`` and ``teacher_texts`` (default: ``spec.teacher_names``) are components in their
    canonical text (``ca:weight=0.1``, see :mod:`bench.components.syntax`), already checked against the registries.
    """
    teacher_texts = spec.teacher_names if teacher_texts is None else teacher_texts
    preset_hash = spec.config.hash()
    own = spec.teacher_config is not None and spec.teacher_config.hash() != preset_hash
    teacher_hash = spec.teacher_config.hash() if own else preset_hash
    kds = [parse_component(text, "kd", "--kd") for text in spec.kds]
    distil = any(kd.name != "none" for kd in kds)
    teacher_trained = distil and spec.teacher_checkpoint is None
    teachers = [parse_component(text, "model", "--teacher") for text in teacher_texts]
    cells: dict[str, Cell] = {}

    def add(cell: Cell) -> Cell:
        return cells.setdefault(cell.run_id, cell)

    for fold in spec.folds:
        for seed in spec.seeds:
            teacher_runs: dict[str, str | None] = {str(t): None for t in teachers}
            if teacher_trained:
                for teacher in teachers:
                    run_id = cell_run_id(teacher.name, "none", None, seed, dataset, teacher_hash, teacher.kwargs,
                                         fold=fold)  # fmt: skip
                    cell = Cell(run_id, teacher.name, "none", seed, fold=fold, is_teacher=True, own_protocol=own,
                                model_kwargs=teacher.kwargs)  # fmt: skip
                    teacher_runs[str(teacher)] = add(cell).run_id
            for text in spec.models:
                model = parse_component(text, "model", "--models")
                run_id = cell_run_id(model.name, "none", None, seed, dataset, preset_hash, model.kwargs, fold=fold)
                none = add(Cell(run_id, model.name, "none", seed, fold=fold, model_kwargs=model.kwargs))
                for kd in kds:
                    if kd.name == "none":
                        continue
                    init_run = none.run_id if spec.config.kd_init == "student" else None
                    for teacher in teachers:
                        # The teacher's own arguments enter the id through its text (ids without them are unchanged).
                        run_id = cell_run_id(model.name, kd.name, str(teacher), seed, dataset, preset_hash,
                                             model.kwargs, kd.kwargs, teacher_hash if own else None, fold)  # fmt: skip
                        args = {"model_kwargs": model.kwargs, "kd_kwargs": kd.kwargs, "teacher_kwargs": teacher.kwargs}
                        teacher_run = teacher_runs[str(teacher)]
                        add(Cell(run_id, model.name, kd.name, seed, teacher.name, fold=fold, teacher_run=teacher_run,
                                 init_run=init_run, **args))  # fmt: skip
    return list(cells.values())
