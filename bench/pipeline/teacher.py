"""The frozen teacher of a KD cell: the weights its teacher cell stored, or ``--teacher-checkpoint``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from bench.components import parse_component
from bench.errors import BenchError
from bench.grid.plan import Cell
from bench.pipeline.checks import own_model_kwargs
from bench.pipeline.inputs import PreparedData
from bench.profiling.profile import build_model
from bench.store import ResultsStore
from bench.training.checkpoint import load_weights
from bench.training.config import RunConfig

if TYPE_CHECKING:
    from bench.pipeline.context import GridContext


@dataclass
class Teacher:
    """The frozen teacher of a KD cell."""

    name: str
    model: nn.Module
    run: str  # the run id of its training, or ``checkpoint:<file name>`` for --teacher-checkpoint


def stored_weights(store: ResultsStore, run_id: str, what: str) -> dict:
    """The final weights of a complete run in the store, loaded weights-only."""
    path = store.run_dir(run_id) / "weights.pt"
    return load_weights(path, what, f"; delete {path.parent} or use --force to train it again")


def stored_teacher(cell: Cell, config: RunConfig, data: PreparedData, store: ResultsStore) -> Teacher:
    """The teacher of KD cell ``cell`` with the weights of its teacher cell; ``config``: the teachers' protocol."""
    assert cell.teacher is not None and cell.teacher_run is not None
    kwargs = own_model_kwargs(cell.teacher, config, cell.teacher_kwargs)
    model = build_model(cell.teacher, data.in_channels, data.num_classes, **kwargs)
    model.load_state_dict(stored_weights(store, cell.teacher_run, "teacher weights"))
    return Teacher(cell.teacher_label or cell.teacher, model, cell.teacher_run)


def checkpoint_teacher(text: str, path: Path, config: RunConfig, data: PreparedData) -> Teacher:
    """Teacher ``text`` (a component, ``unet3d:base_channels=16``) with the weights of ``--teacher-checkpoint``."""
    teacher = parse_component(text, "model", "--teacher")
    name = teacher.name
    kwargs = own_model_kwargs(name, config, teacher.kwargs)
    model = build_model(name, data.in_channels, data.num_classes, **kwargs)
    try:
        model.load_state_dict(load_weights(path, "--teacher-checkpoint"))
    except (RuntimeError, OSError) as err:
        first = str(err).strip().splitlines()[0]
        raise BenchError(f"--teacher-checkpoint {path} does not fit {name} with {data.num_classes} classes: "
                         f"{first}") from None  # fmt: skip
    return Teacher(str(teacher), model, f"checkpoint:{path.name}")


def teacher_of(cell: Cell, data: PreparedData, grid: GridContext) -> Teacher:
    """The frozen teacher of KD cell ``cell``: ``--teacher-checkpoint``, else its teacher cell's stored weights."""
    spec = grid.spec
    if spec.teacher_checkpoint is not None:
        return checkpoint_teacher(spec.teacher_names[0], spec.teacher_checkpoint, spec.own_teacher_config, data)
    return stored_teacher(cell, spec.own_teacher_config, data, grid.store)


def check_teacher_checkpoint(grid: GridContext, data: PreparedData) -> None:
    """Fail before any training when ``--teacher-checkpoint`` does not fit the teacher model."""
    spec = grid.spec
    if spec.teacher_checkpoint is not None and spec.distils:
        checkpoint_teacher(spec.teacher_names[0], spec.teacher_checkpoint, spec.own_teacher_config, data)
