"""``--executor local --jobs N``: the cells in N worker processes on this machine.

A cell starts once the cells it needs are complete. On the CPU each worker gets ``cores // N`` torch threads (unless
OMP_NUM_THREADS is set: then that); with GPUs worker ``i`` sees only GPU ``i mod count`` (CUDA_VISIBLE_DEVICES), one
cell per device. Each worker's output goes to ``ROOT/jobs/<run_id>/log.txt``; the cells' states are in ``bench
status``. Torch is not imported in this module: the workers start with their environment set before it is.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

from bench import console
from bench.atomic import open_in_place
from bench.executors.jobs import write_job
from bench.grid.plan import Cell
from bench.grid.spec import GridSpec
from bench.store_layout import ResultsLayout


def _init_worker(slots, threads: int, gpus: list[int]) -> None:
    """Runs first in each worker: its GPU and its thread count, before torch is imported."""
    slot = slots.get()
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpus[slot % len(gpus)])
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def _run(spec: GridSpec, cell: Cell) -> str:
    from bench.executors.worker import run_cell_in_worker, use_worker_threads

    use_worker_threads(None)  # OMP_NUM_THREADS, set by _init_worker
    with _output_to(ResultsLayout(spec.results).job(cell.run_id).log):
        return run_cell_in_worker(spec, cell)


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """File descriptors 1 and 2 (this process and the profiling subprocess it starts) appended to ``path``, never
    through a link."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(open_in_place(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def gpus_for(device: str) -> list[int]:
    """The GPUs the workers share out: all visible ones, unless the run is on the CPU."""
    import torch

    if device == "cpu" or not torch.cuda.is_available():
        return []
    return list(range(torch.cuda.device_count()))


def run_local(spec: GridSpec, cells: list[Cell], complete: set[str], jobs: int) -> list[str]:
    """Run the cells not in ``complete`` in ``jobs`` worker processes; returns the run ids that failed (with those
    that could not start because a cell they need failed)."""
    from dataclasses import replace

    gpus = gpus_for(spec.device)
    if gpus:
        spec = replace(spec, device="cuda")
    threads = max(1, (os.cpu_count() or 1) // jobs)
    ctx = multiprocessing.get_context("spawn")
    slots = ctx.Queue()
    for i in range(jobs):
        slots.put(i)
    pending = [c for c in cells if c.run_id not in complete]
    done, failed = set(complete), []
    running: dict[Future, Cell] = {}
    for index, cell in enumerate(cells, 1):
        if cell.run_id not in complete:
            write_job(spec.results, cell, index, "local")
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=(slots, threads, gpus)) as pool:
        while pending or running:
            for cell in list(pending):
                if any(n in failed for n in cell.needs):
                    pending.remove(cell)
                    failed.append(cell.run_id)
                    console.warning(f"not run {cell.run_id}: a cell it needs failed")
                elif len(running) < jobs and all(n in done for n in cell.needs):
                    pending.remove(cell)
                    running[pool.submit(_run, spec, cell)] = cell
                    console.note(f"bench run: start {cell.label}  [{cell.run_id}]")
            if not running:  # what is left waits for cells outside the plan: cannot happen with plan_cells
                failed += [c.run_id for c in pending]
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                cell = running.pop(future)
                err = future.exception()
                if err is None:
                    done.add(cell.run_id)
                    console.note(f"bench run: done  {cell.label}")
                else:
                    failed.append(cell.run_id)
                    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                    where = ResultsLayout(spec.results).job(cell.run_id).dir
                    console.warning(f"FAILED {cell.label}: {first}  (see {where})")
    return failed
