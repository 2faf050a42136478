"""One cell of a grid end to end: the run lock, skip or clean, then teacher, student, training, evaluation,
profile and record. Rank 0 evaluates, profiles and writes; every rank of a DDP job trains.

A complete run (its ``summary.json`` exists) is skipped unless ``force``; an interrupted run resumes from its last
checkpoint unless ``restart``. The cells a cell needs (its teacher's, its ``kd_init`` student's) must be complete.
"""

from __future__ import annotations

from pathlib import Path

from bench import console
from bench.grid.plan import Cell
from bench.grid.progress import GridProgress
from bench.pipeline.context import GridContext
from bench.pipeline.evaluate import evaluate_test
from bench.pipeline.inputs import FoldInputs
from bench.pipeline.profile import profile_network
from bench.pipeline.record import CellOutcome, run_summary, write_start_records
from bench.pipeline.teacher import teacher_of
from bench.pipeline.train import build_student, keep_final_weights, train_student
from bench.runlock import RunLock
from bench.training.trainer import seed_everything


def run_cell(cell: Cell, inputs: FoldInputs, grid: GridContext, progress: GridProgress) -> str:
    """Train, evaluate, profile and store ``cell``; returns its run id.

    One process owns a run (see bench.runlock): an identical command started at the same time waits here, then finds
    the run complete and skips it. Rank 0 owns it for all ranks of a DDP job."""
    run_dir = grid.store.run_dir(cell.run_id)
    lock = RunLock(run_dir) if grid.dist.is_main else None
    if lock is not None:
        lock.acquire(on_wait=lambda owner: console.note(
            f"wait {cell.run_id}: another process is running it ({owner or 'owner unknown'}); waiting for it to finish"
        ))  # fmt: skip
    grid.dist.barrier()
    try:
        _run_owned(cell, inputs, grid, progress, run_dir)
    finally:
        if lock is not None:
            lock.release()
    return cell.run_id


def _run_owned(cell: Cell, inputs: FoldInputs, grid: GridContext, progress: GridProgress, run_dir: Path) -> None:
    spec, data, main = grid.spec, inputs.data, grid.dist.is_main
    if grid.store.is_complete(cell.run_id) and not spec.force:
        progress.skipped(cell.run_id, grid.store.summary(cell.run_id))
        return
    if main and (spec.force or spec.restart):
        grid.store.reset_run(cell.run_id)
    grid.dist.barrier()
    progress.start(cell.run_id)
    config, preset = grid.config_for(cell), grid.preset_label(cell)
    teacher = teacher_of(cell, data, grid) if cell.kd != "none" else None
    seed_everything(cell.seed, config.deterministic)
    student = build_student(cell, config, data, teacher, grid.store)
    if main:
        write_start_records(grid.store, cell, student.kwargs, teacher, student.kd_hparams, data, config, preset)
    result = train_student(student, teacher, config, inputs, device=grid.device, run_dir=run_dir, seed=cell.seed,
                           dist=grid.dist, label=progress.short_label(cell.run_id))  # fmt: skip
    if main:
        keep_final_weights(student, result, grid.store, cell.run_id)
        predictions = grid.store.paths(cell.run_id).predictions if spec.save_predictions else None
        per_case = evaluate_test(student.model, data, inputs.test, config, grid.device, workers=spec.eval_workers,
                                 predictions=predictions)  # fmt: skip
        profile = profile_network(cell.model, student.kwargs, data, config, grid.device, spec.whole_volume,
                                  grid.profiles)  # fmt: skip
        outcome = CellOutcome(cell, student.kwargs, teacher, student.kd_hparams, result, per_case)
        summary = run_summary(outcome, data, config, preset, grid.device, profile)
        grid.store.record_run(cell.run_id, summary, per_case)
        progress.finished(cell.run_id, summary, result.resumed_from)
    grid.dist.barrier()
