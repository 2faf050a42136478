"""The frozen teacher of a KD cell: the weights its teacher cell stored, or ``--teacher-checkpoint``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from bench.components.syntax import parse_component
from bench.grid.plan import Cell
from bench.networks import build_model, load_model, load_weights_into, note_format, own_model_kwargs
from bench.pipeline.inputs import PreparedData
from bench.store import ResultsStore
from bench.training.config import RunConfig

if TYPE_CHECKING:
    from bench.pipeline.context import GridContext


@dataclass
class Teacher:
    """The frozen teacher of a KD cell."""

    name: str
    model: nn.Module
    run: str  # the run id of its training, or ``checkpoint:<file name>`` for --teacher-checkpoint


def stored_weights(model: nn.Module, name: str, store: ResultsStore, run_id: str, what: str) -> None:
    """Load the final weights of a complete run in the store into ``model`` (the network ``name``)."""
    path = store.paths(run_id).weights
    load_weights_into(model, name, path, what, f"; delete {path.parent} or use --force to train it again")


def stored_teacher(cell: Cell, config: RunConfig, data: PreparedData, store: ResultsStore) -> Teacher:
    """The teacher of KD cell ``cell`` with the weights of its teacher cell; ``config``: the teachers' protocol."""
    assert cell.teacher is not None and cell.teacher_run is not None
    kwargs = own_model_kwargs(cell.teacher, config, cell.teacher_kwargs)
    model = build_model(cell.teacher, data.in_channels, data.num_classes, **kwargs)
    stored_weights(model, cell.teacher, store, cell.teacher_run, "teacher weights")
    return Teacher(cell.teacher_label or cell.teacher, model, cell.teacher_run)


def checkpoint_teacher(text: str, path: Path, config: RunConfig, data: PreparedData) -> Teacher:
    """Teacher ``text`` (a component, ``unet3d:base_channels=16``) with the weights of ``--teacher-checkpoint``."""
    teacher = parse_component(text, "model", "--teacher")
    kwargs = own_model_kwargs(teacher.name, config, teacher.kwargs)
    model, found = load_model(teacher.name, data.in_channels, data.num_classes, path, "--teacher-checkpoint",
                              **kwargs)  # fmt: skip
    note_format("--teacher-checkpoint", path, found)
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
