"""The record stage: what a run writes besides its checkpoints. Before training: ``config.json`` (what was run),
``env.json`` (where) and ``preprocessing.json`` (how to segment a new CT with it); after evaluation and profiling the
summary, whose writing marks the run complete (:meth:`bench.store.ResultsStore.record_run`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd
import torch
from torch import nn

from bench.deploy.spec import DeploySpec
from bench.environment import environment
from bench.grid.plan import Cell
from bench.pipeline.inputs import PreparedData
from bench.pipeline.teacher import Teacher
from bench.run_summary import RunSummary
from bench.store import ResultsStore
from bench.training.config import RunConfig
from bench.training.trainer import TrainResult


@dataclass
class CellOutcome:
    """What a trained and evaluated cell leaves for its summary."""

    cell: Cell
    model_kwargs: dict  # the student's factory arguments (the preset's, then the cell's)
    teacher: Teacher | None
    kd_hparams: dict
    result: TrainResult
    per_case: pd.DataFrame


def write_start_records(store: ResultsStore, cell: Cell, kwargs: dict, teacher: Teacher | None, hparams: dict,
                        data: PreparedData, config: RunConfig, preset: str) -> None:  # fmt: skip
    """``config.json``, ``env.json`` and ``preprocessing.json`` of ``cell``'s run, written before it trains."""
    store.write_config(cell.run_id, {
        "model": cell.model, "kd": cell.kd, "teacher": teacher.name if teacher else None,
        "teacher_run": teacher.run if teacher else None, "seed": cell.seed, "dataset": data.name,
        "preset": preset, "preset_hash": config.hash(), "model_kwargs": kwargs,
        "kd_kwargs": cell.kd_kwargs, "teacher_kwargs": cell.teacher_kwargs, "fold": cell.fold,
        "kd_hparams": hparams, "config": config.to_dict(),
    })  # fmt: skip
    store.write_env(cell.run_id, environment())
    store.write_spec(cell.run_id, deploy_spec(cell.run_id, cell.model, kwargs, data, config))


def deploy_spec(run_id: str, name: str, kwargs: dict, data: PreparedData, config: RunConfig) -> DeploySpec:
    """What `bench predict` and `bench export` need besides the weights to repeat this run's evaluation."""
    return DeploySpec(
        model=name, in_channels=data.in_channels, num_classes=data.num_classes, labels=data.labels,
        preprocessing=data.preprocessing, patch=list(config.eval_patch()), overlap=config.overlap,
        sw_batch_size=config.sw_batch_size, amp=config.amp, model_kwargs=kwargs, ct_stats=data.ct_stats,
        run_id=run_id, cases={"train": data.split_ids[0], "test": data.split_ids[1]},
    )  # fmt: skip


def run_summary(outcome: CellOutcome, data: PreparedData, config: RunConfig, preset: str, device: torch.device,
                profile: dict) -> RunSummary:  # fmt: skip
    """The run's ``summary.json``: what ran, its profile, its test metrics and how training went."""
    from bench.metrics import summarize

    cell, result, teacher, prof = outcome.cell, outcome.result, outcome.teacher, profile
    metrics = summarize(outcome.per_case)
    return RunSummary(
        run_id=cell.run_id, model=cell.model_label, kd=cell.kd_label,
        teacher=teacher.name if teacher else None,
        teacher_run=teacher.run if teacher else None, seed=cell.seed, preset=preset,
        preset_hash=config.hash(),
        dataset=data.name, patch=list(config.patch), device=str(device),
        latency_device=prof["device"], params=prof["params"], gmacs=prof["gmacs"],
        uncounted_ops=prof["uncounted_ops"], latency_ms_median=prof["latency_ms_median"],
        latency_ms_p90=prof["latency_ms_p90"], peak_mem_mb=prof["peak_mem_mb"],
        latency_cpu=prof.get("cpu_model"), latency_threads=prof.get("threads"),
        latency_load_avg=prof.get("load_avg_1min"), latency_cpu_count=prof.get("cpu_count"),
        dataset_synthetic=data.synthetic, n_train=data.counts[0], n_val=data.counts[1],
        n_test=data.counts[2], base_channels=config.base_channels,
        whole_volume=prof["whole_volume"], whole_ct_seconds=prof["whole_ct_seconds"],
        **metrics,
        train_seconds=result.train_seconds, iterations=result.iterations,
        best_val_dice=None if result.best_val_dice is None or math.isnan(result.best_val_dice)
        else result.best_val_dice,
        first_step=result.first_step, numerics=numerics(), kd_hparams=outcome.kd_hparams,
        model_kwargs=outcome.model_kwargs, kd_kwargs=cell.kd_kwargs, teacher_kwargs=cell.teacher_kwargs,
        fold=cell.fold,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        torch=torch.__version__,
    )  # fmt: skip


def numerics() -> dict:
    """What decides a run's floating-point rounding: the CPU kernel set (``ATEN_CPU_CAPABILITY``) and thread count."""
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}


def kd_hparams(method: nn.Module) -> dict:
    """The scalar settings of a KD method (of each part, for a ``ca+ms`` composition), for the run record."""
    parts = getattr(method, "parts", None)
    if isinstance(parts, nn.ModuleDict):
        return {name: kd_hparams(part) for name, part in parts.items()}
    return {k: v for k, v in vars(method).items() if k != "training" and not k.startswith("_") and _is_scalar(v)}


def _is_scalar(value: object) -> bool:
    return isinstance(value, int | float | str | bool) or (
        isinstance(value, list | tuple) and all(isinstance(v, int | float) for v in value)
    )
