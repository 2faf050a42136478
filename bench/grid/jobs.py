"""What the executors record about each cell, and each cell's state for ``bench status``.

Layout under the results store (next to ``runs/``)::

    ROOT/jobs/<run_id>/job.json     executor, job id, submission time   (written by the dispatching `bench run`)
    ROOT/jobs/<run_id>/error.txt    the error of the last failed attempt (written by the worker; removed on retry)
    ROOT/jobs/<run_id>/log.txt      the worker's output (--executor local)
    ROOT/jobs/<run_id>/*_log.{out,err}  the job's output (--executor slurm, written by submitit)

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
from bench.runlock import RunLock
from bench.store import SUMMARY_FILE

JOB_FILE, ERROR_FILE, LOG_FILE = "job.json", "error.txt", "log.txt"
LAST = "checkpoint_last.pt"
_SUBMITIT_PREFIX = re.compile(r"^submitit \w+ \([^)]*\) - ")


def jobs_dir(results: Path, run_id: str) -> Path:
    return Path(results) / "jobs" / run_id


def write_job(results: Path, cell: Cell, index: int, executor: str, job_id: str | None = None) -> None:
    """Record that ``cell`` (number ``index`` of its plan) was handed to ``executor`` (as SLURM job ``job_id``)."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    atomic_write_json(jobs_dir(results, cell.run_id) / JOB_FILE, {
        "executor": executor, "job_id": job_id, "submitted": now, "cell": cell.label, "index": index,
    })  # fmt: skip


def read_job(results: Path, run_id: str) -> dict:
    try:
        job = json.loads((jobs_dir(results, run_id) / JOB_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return job if isinstance(job, dict) else {}


def record_error(results: Path, run_id: str, err: BaseException) -> None:
    """Keep why an attempt failed: the one-line message of a usage error, else the traceback."""
    text = f"error: {err}\n" if isinstance(err, BenchError) else "".join(traceback.format_exception(err))
    atomic_write_text(jobs_dir(results, run_id) / ERROR_FILE, text)


def clear_error(results: Path, run_id: str) -> None:
    (jobs_dir(results, run_id) / ERROR_FILE).unlink(missing_ok=True)


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
    from bench.console import duration

    run_dir, job_dir = Path(results) / "runs" / run_id, jobs_dir(results, run_id)
    job = read_job(results, run_id)
    job_id = job.get("job_id")
    last = last_log_line(job_dir)
    if (run_dir / SUMMARY_FILE).is_file():
        try:
            seconds = json.loads((run_dir / SUMMARY_FILE).read_text()).get("train_seconds")
        except (OSError, ValueError):
            seconds = None
        return CellState(run_id, "complete", job_id, "-" if seconds is None else duration(seconds), last)
    owner = RunLock(run_dir).owner() if run_dir.is_dir() else None
    if job_id is not None and job_id in queue:
        state, elapsed = queue[job_id]
        if state in ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "SUSPENDED"):
            return CellState(run_id, "queued", job_id, "-", last)
        return CellState(run_id, "running", job_id, elapsed, last)
    if owner is not None:
        started = datetime.fromisoformat(owner.started)
        elapsed = duration((datetime.now(timezone.utc) - started).total_seconds())
        return CellState(run_id, "running", owner.job or job_id, elapsed, last)
    error = _tail(job_dir / ERROR_FILE, 6)
    if error:
        return CellState(run_id, "failed", job_id, "-", last, error)
    if (run_dir / LAST).is_file():
        return CellState(run_id, "interrupted", job_id, "-", last)
    if job.get("executor") == "slurm" and last:  # the job started, ended, and left neither a checkpoint nor an error
        return CellState(run_id, "failed", job_id, "-", last, _tail(_newest_log(job_dir), 6))
    return CellState(run_id, "not started", job_id, "-", last)


def last_log_line(job_dir: Path) -> str:
    """The last non-empty line of the newest log of a cell (progress bars' carriage returns count as line ends)."""
    lines = _lines(_newest_log(job_dir))
    return _SUBMITIT_PREFIX.sub("", lines[-1]) if lines else ""


def _newest_log(job_dir: Path) -> Path:
    """The cell's log written last (the worker's ``log.txt``, or the stderr, else stdout, of its newest job)."""
    logs = [p for pattern in (LOG_FILE, "*_log.err", "*_log.out") for p in job_dir.glob(pattern)
            if p.is_file() and p.stat().st_size]  # fmt: skip
    return max(logs, key=lambda p: p.stat().st_mtime, default=job_dir / LOG_FILE)


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
    ids = {p.name for sub in ("runs", "jobs") for p in (Path(results) / sub).glob("*") if p.is_dir()}

    def order(run_id: str) -> tuple:
        job = read_job(results, run_id)
        return (not job, str(job.get("submitted", "")), int(job.get("index") or 0), run_id)

    return sorted(ids, key=order)
