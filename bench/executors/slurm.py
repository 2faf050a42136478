"""``--executor slurm``: one SLURM job per cell, submitted through submitit.

A cell's job depends (``afterok``) on the jobs of the cells it needs that are not complete yet, and is cancelled by
SLURM when one of them fails (``--kill-on-invalid-dep=yes``). A job that reaches its time limit or is preempted gets
SIGUSR2 from SLURM; submitit then requeues it, and the requeued job resumes the run from its last checkpoint. A cell
whose job is still pending or running is not submitted again. Job files and logs: ``ROOT/jobs/<run_id>/``.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, field, replace

from bench import console
from bench.errors import BenchError
from bench.executors.jobs import read_job, slurm_output, slurm_queue, write_job
from bench.grid.plan import Cell
from bench.grid.spec import GridSpec
from bench.store_layout import ResultsLayout

EXTRA = "pip install 'segkd-bench[slurm]'"


@dataclass
class SlurmOptions:
    """What each job asks SLURM for; ``extra`` are free-form ``sbatch`` options (``--slurm-opt key=value``)."""

    partition: str | None = None
    gpus: int = 0
    cpus: int | None = None
    mem: str | None = None
    time_min: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


def parse_time(text: str, arg: str = "--slurm-time") -> int:
    """Minutes from ``MM``, ``HH:MM:SS``, ``MM:SS`` or ``D-HH[:MM[:SS]]`` (sbatch's formats); seconds round up."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        raise BenchError(f"{arg}: {text!r} is not a time (minutes, HH:MM:SS or D-HH:MM)")
    days, a, b, c = (int(g) if g else None for g in match.groups())
    if days is not None:
        hours, minutes, seconds = a, b or 0, c or 0
    elif c is not None:
        hours, minutes, seconds = a, b, c
    elif b is not None:
        hours, minutes, seconds = 0, a, b
    else:
        hours, minutes, seconds = 0, a, 0
    total = ((days or 0) * 24 + hours) * 60 + minutes + (1 if seconds else 0)
    if total <= 0:
        raise BenchError(f"{arg}: {text!r} must be longer than 0")
    return total


NO_LIMIT_MIN = 365 * 24 * 60  # a partition without a time limit: a year stands for "never times out"


def partition_minutes(partition: str | None) -> int:
    """Minutes a job of ``partition`` (the default partition for None) may run when it asks for no time: the
    partition's DefaultTime, else its MaxTime, else (unlimited, or sinfo silent) ``NO_LIMIT_MIN``.

    submitit's SIGUSR2 handler tells a time-out from a preemption by comparing the job's walltime with the time it
    was submitted with, and fails with a TypeError when that is None, so a job must never be submitted without one.
    """
    for line in slurm_output(["sinfo", "-h", "-o", "%P|%L|%l"]).splitlines():
        name, _, limits = line.strip().partition("|")
        if name.rstrip("*") == partition or (partition is None and name.endswith("*")):
            for limit in limits.split("|"):
                try:
                    return parse_time(limit)
                except BenchError:  # "n/a" (no DefaultTime) or "infinite"
                    continue
            return NO_LIMIT_MIN
    return NO_LIMIT_MIN


def parse_opts(items: list[str]) -> dict[str, str]:
    """``--slurm-opt key=value`` (repeatable) as sbatch options; ``--slurm-opt exclusive`` for a flag."""
    opts = {}
    for item in items:
        key, _, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not key:
            raise BenchError(f"--slurm-opt: {item!r} is not key=value")
        opts[key] = value.strip()
    return opts


def check_available() -> None:
    """submitit installed and sbatch on PATH, or a one-line error naming what is missing."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise BenchError(f"--executor slurm needs submitit: {EXTRA}") from None
    if shutil.which("sbatch") is None:
        raise BenchError("--executor slurm needs SLURM's sbatch on PATH (run on a cluster's login node)")


def allocated_cpus() -> int | None:
    """The CPUs SLURM allocated to this job; None outside a job. Where the cluster does not bind a job to its CPUs
    (``TaskPlugin=task/none``) torch would start one thread per core of the node, and jobs sharing the node would
    oversubscribe it."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK") or os.environ.get("SLURM_CPUS_ON_NODE")
    return int(cpus) if cpus and cpus.isdigit() else None


class CellJob:
    """The callable a SLURM job runs; submitit's ``checkpoint`` hook requeues it on timeout or preemption."""

    def __init__(self, spec: GridSpec, cell: Cell) -> None:
        self.spec, self.cell = spec, cell

    def __call__(self) -> str:
        from bench.executors.worker import run_cell_in_worker, use_worker_threads

        use_worker_threads(allocated_cpus())
        return run_cell_in_worker(self.spec, self.cell)

    def checkpoint(self):
        """Requeue this job. The run's own checkpoint is on disk already (the trainer writes ``checkpoint_last.pt``
        as it goes); the requeued job resumes from it, never restarting or forcing again."""
        import submitit

        return submitit.helpers.DelayedSubmission(CellJob(replace(self.spec, force=False, restart=False), self.cell))


def submit_slurm(spec: GridSpec, cells: list[Cell], complete: set[str], options: SlurmOptions) -> dict[str, str]:
    """Submit a job for each cell not complete and not queued or running already; returns run id -> job id of the
    cells that have a job now (new or live)."""
    import submitit

    absolute = {k: getattr(spec, k).absolute() for k in ("results", "data", "labels", "teacher_checkpoint")
                if getattr(spec, k) is not None}  # fmt: skip
    spec = replace(spec, **absolute)  # the jobs may start in another directory
    queue = slurm_queue()
    time_min = options.time_min or partition_minutes(options.partition)  # submitit's own default is 5 minutes
    jobs: dict[str, str] = {}
    for index, cell in enumerate(cells, 1):
        if cell.run_id in complete:
            continue
        live = read_job(spec.results, cell.run_id).get("job_id")
        if live is not None and live in queue:
            jobs[cell.run_id] = live
            console.note(f"bench run: queued already  {cell.label}: job {live}")
            continue
        executor = submitit.SlurmExecutor(folder=ResultsLayout(spec.results).job(cell.run_id).dir, max_num_timeout=20)
        params: dict = {"job_name": f"segkd-{cell.run_id}"[:120]}
        if options.partition:
            params["partition"] = options.partition
        if options.gpus:
            params["gpus_per_node"] = options.gpus
        if options.cpus:
            params["cpus_per_task"] = options.cpus
        if options.mem:
            params["mem"] = options.mem
        params["time"] = time_min
        extra = {"kill-on-invalid-dep": "yes", **options.extra}
        after = [jobs[n] for n in cell.needs if n in jobs]
        if after:
            params["dependency"] = "afterok:" + ":".join(after)
        executor.update_parameters(**params, additional_parameters=extra)
        try:
            job = executor.submit(CellJob(spec, cell))
        except Exception as err:  # submitit raises its own error types with sbatch's message
            raise BenchError(f"sbatch refused the job of {cell.run_id}: {' '.join(str(err).split())[:400]}") from None
        jobs[cell.run_id] = str(job.job_id)
        write_job(spec.results, cell, index, "slurm", str(job.job_id))
        console.note(f"bench run: submitted  {cell.label}: job {job.job_id}"
                     + (f" (after {', '.join(after)})" if after else ""))  # fmt: skip
    return jobs


def wait_for(job_ids: list[str], poll_s: float = 2.0) -> None:
    """Block until SLURM no longer lists any of ``job_ids`` (finished, failed or cancelled)."""
    pending = set(job_ids)
    while pending:
        pending &= set(slurm_queue())
        if pending:
            time.sleep(poll_s)
