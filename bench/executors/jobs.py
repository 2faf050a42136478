"""What the executors record about each cell, and each cell's state for ``bench status``.

Each cell has a folder under the results store's ``jobs/`` (:class:`bench.store_layout.JobPaths`): its job record
(executor, job id, submission time; written by the dispatching ``bench run``), the error of its last failed attempt
(written by the worker, removed on a retry) and the worker's output (``log.txt`` with --executor local, submitit's
``*_log.{out,err}`` with --executor slurm).

The run directory stays the record of the run itself: ``summary.json`` says complete, the run lock says running.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bench.atomic import atomic_write_json, atomic_write_text
from bench.errors import BenchError
from bench.grid.plan import Cell
from bench.grid.progress import duration
from bench.run_summary import RunSummary
from bench.runlock import RunLock
from bench.store_layout import JobPaths, ResultsLayout

_SUBMITIT_PREFIX = re.compile(r"^submitit \w+ \([^)]*\) - ")


def write_job(results: Path, cell: Cell, index: int, executor: str, job_id: str | None = None) -> None:
    """Record that ``cell`` (number ``index`` of its plan) was handed to ``executor`` (as SLURM job ``job_id``)."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    atomic_write_json(ResultsLayout(results).job(cell.run_id).record, {
        "executor": executor, "job_id": job_id, "submitted": now, "cell": cell.label, "index": index,
    })  # fmt: skip


def read_job(results: Path, run_id: str) -> dict:
    try:
        job = json.loads(ResultsLayout(results).job(run_id).record.read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return job if isinstance(job, dict) else {}


def record_error(results: Path, run_id: str, err: BaseException) -> None:
    """Keep why an attempt failed: the one-line message of a usage error, else the traceback."""
    text = f"error: {err}\n" if isinstance(err, BenchError) else "".join(traceback.format_exception(err))
    atomic_write_text(ResultsLayout(results).job(run_id).error, text)


def clear_error(results: Path, run_id: str) -> None:
    ResultsLayout(results).job(run_id).error.unlink(missing_ok=True)


def slurm_output(command: list[str]) -> str:
    """What a SLURM query command (squeue, sinfo) prints; empty without SLURM or when it does not answer in 30 s."""
    if shutil.which(command[0]) is None:
        return ""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def slurm_queue() -> dict[str, tuple[str, str]]:
    """Job id -> (state, elapsed) of the jobs SLURM knows now; empty without SLURM."""
    queue = {}
    for line in slurm_output(["squeue", "-h", "-o", "%i|%T|%M"]).splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            queue[parts[0]] = (parts[1], parts[2])
    return queue


@dataclass
class CellState:
    """One row of ``bench status``."""

    run_id: str
    state: str  # complete, running, queued, failed, interrupted, not started
    job_id: str | None = None
    elapsed: str = "-"
    last_line: str = ""
    error: str = ""
    cell: str = "-"  # ``lcovnet + ca from unet3d, seed 0``, from the job record


def cell_state(results: Path, run_id: str, queue: dict[str, tuple[str, str]]) -> CellState:
    """Where ``run_id`` stands: from its run directory, its job record and the SLURM queue."""
    state = _state(results, run_id, queue)
    state.cell = str(read_job(results, run_id).get("cell") or "-")
    return state


def _state(results: Path, run_id: str, queue: dict[str, tuple[str, str]]) -> CellState:
    layout = ResultsLayout(results)
    run, job_paths = layout.run(run_id), layout.job(run_id)
    job = read_job(results, run_id)
    job_id = job.get("job_id")
    last = last_log_line(job_paths)
    if run.summary.is_file():
        try:
            seconds = RunSummary.read(run.summary, run_id).train_seconds
        except (OSError, BenchError):
            seconds = None
        return CellState(run_id, "complete", job_id, "-" if seconds is None else duration(seconds), last)
    owner = RunLock(run.dir).owner() if run.dir.is_dir() else None
    if job_id is not None and job_id in queue:
        state, elapsed = queue[job_id]
        if state in ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "SUSPENDED"):
            return CellState(run_id, "queued", job_id, "-", last)
        return CellState(run_id, "running", job_id, elapsed, last)
    if owner is not None:
        started = datetime.fromisoformat(owner.started)
        elapsed = duration((datetime.now(timezone.utc) - started).total_seconds())
        return CellState(run_id, "running", owner.job or job_id, elapsed, last)
    error = _tail(job_paths.error, 6)
    if error:
        return CellState(run_id, "failed", job_id, "-", last, error)
    if run.checkpoint_last.is_file():
        return CellState(run_id, "interrupted", job_id, "-", last)
    if job.get("executor") == "slurm" and last:  # the job started, ended, and left neither a checkpoint nor an error
        return CellState(run_id, "failed", job_id, "-", last, _tail(_newest_log(job_paths), 6))
    return CellState(run_id, "not started", job_id, "-", last)


def last_log_line(job: JobPaths) -> str:
    """The last non-empty line of the newest log of a cell (progress bars' carriage returns count as line ends)."""
    lines = _lines(_newest_log(job))
    return _SUBMITIT_PREFIX.sub("", lines[-1]) if lines else ""


def _newest_log(job: JobPaths) -> Path:
    """The cell's log written last (the worker's log, or the stderr, else stdout, of its newest SLURM job)."""
    logs = [p for p in (job.log, *job.dir.glob("*_log.err"), *job.dir.glob("*_log.out"))
            if p.is_file() and p.stat().st_size]  # fmt: skip
    return max(logs, key=lambda p: p.stat().st_mtime, default=job.log)


def _lines(path: Path) -> list[str]:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 8192))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line.strip() for line in text.replace("\r", "\n").split("\n") if line.strip()]


def _tail(path: Path, n: int) -> str:
    return "\n".join(_lines(path)[-n:])


def known_runs(results: Path) -> list[str]:
    """Every run id the store has a run directory or a job record for: dispatched cells in the order of their
    dispatch and plan, then the others by run id."""
    layout = ResultsLayout(results)
    ids = {*layout.run_ids(), *layout.job_ids()}

    def order(run_id: str) -> tuple:
        job = read_job(results, run_id)
        return (not job, str(job.get("submitted", "")), int(job.get("index") or 0), run_id)

    return sorted(ids, key=order)
