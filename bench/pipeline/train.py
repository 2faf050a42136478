"""The training stage: a cell's student (with its KD method and starting weights) built, trained, and its final
weights loaded back and saved as ``weights.pt``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

import kd_methods
from bench.grid.plan import Cell
from bench.networks import build_model, own_model_kwargs
from bench.pipeline.inputs import FoldInputs, PreparedData
from bench.pipeline.record import kd_hparams
from bench.pipeline.teacher import Teacher, stored_weights
from bench.store import ResultsStore
from bench.training.checkpoint import load_weights, save_checkpoint
from bench.training.config import RunConfig
from bench.training.distributed import DistContext
from bench.training.trainer import Trainer, TrainResult


@dataclass
class Student:
    """The network a cell trains, with what it is distilled by."""

    model: nn.Module
    kwargs: dict  # its factory arguments (the preset's, then the cell's)
    kd: nn.Module | None = None  # the KD method; None without a teacher
    kd_hparams: dict = field(default_factory=dict)


def build_student(cell: Cell, config: RunConfig, data: PreparedData, teacher: Teacher | None,
                  store: ResultsStore) -> Student:  # fmt: skip
    """``cell``'s student and KD method; with ``kd_init = "student"`` it starts from its no-KD cell's weights.
    Call after seeding: the initial weights come from the seeded generator."""
    kwargs = own_model_kwargs(cell.model, config, cell.model_kwargs)
    model = build_model(cell.model, data.in_channels, data.num_classes, **kwargs)
    if teacher is None:
        return Student(model, kwargs)
    method = kd_methods.create_kd_method(
        cell.kd, model.feature_channels, teacher.model.feature_channels, data.num_classes,
        **own_kd_kwargs(cell.kd, config, cell.kd_kwargs),
    )  # fmt: skip
    if cell.init_run:
        stored_weights(model, cell.model, store, cell.init_run, "--kd-init student weights")
    return Student(model, kwargs, method, kd_hparams(method))


def own_kd_kwargs(name: str, config: RunConfig, own: dict) -> dict:
    """The preset's ``[kd_kwargs.<method>]`` arguments of KD method ``name`` with the method's own
    (``--kd name:key=value``) over them. A composition (``ca+ms``) gets each part's preset arguments scoped to that
    part, less the keys its own arguments set for every part."""
    if "+" not in name:
        return {**config.kd_kwargs.get(name, {}), **own}
    out = dict(own)
    for part in (p.strip() for p in name.split("+")):
        scoped = own.get(part) if isinstance(own.get(part), dict) else {}
        preset = {k: v for k, v in config.kd_kwargs.get(part, {}).items() if k not in own}
        if preset or scoped:
            out[part] = {**preset, **scoped}
    return out


def train_student(
    student: Student, teacher: Teacher | None, config: RunConfig, inputs: FoldInputs, *,
    device: torch.device, run_dir: Path, seed: int, dist: DistContext, label: str,
) -> TrainResult:  # fmt: skip
    """Train ``student`` (resuming from ``run_dir``'s last checkpoint, if any) on ``inputs``' training cases."""
    trainer = Trainer(
        model=student.model, config=config, train_cases=inputs.train, val_cases=inputs.val, device=device,
        run_dir=run_dir, seed=seed, kd=student.kd, teacher=teacher.model if teacher else None, ctx=dist, label=label,
        ignore_label=inputs.data.preprocessing.get("ignore_label"),
    )  # fmt: skip
    return trainer.fit()


def keep_final_weights(student: Student, result: TrainResult, store: ResultsStore, run_id: str) -> None:
    """Load the checkpoint training chose (``eval_checkpoint``) into the student and save it as the run's
    ``weights.pt``."""
    student.model.load_state_dict(load_weights(result.weights, "checkpoint", "; --restart discards it"))
    save_checkpoint(store.paths(run_id).weights, {"model": student.model.state_dict(), "source": result.weights.name})
