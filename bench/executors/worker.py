"""One cell in a worker process (``--executor local`` or a SLURM job): the cell function plus the job record.

The dispatching ``bench run`` has checked the arguments and the data set and filled the preprocessing cache; the
worker loads the prepared cases from that cache, runs the cell through the run lock (a cell someone else is running
is waited for, then found complete) and writes its run directory only (the SQLite index is refreshed by readers).
"""

from __future__ import annotations

import os

from bench import console
from bench.executors.jobs import clear_error, record_error
from bench.grid.plan import Cell
from bench.grid.spec import GridSpec


def use_worker_threads(default: int | None) -> None:
    """torch's threads in this worker and in the processes it starts (the spawned profiling process reads
    OMP_NUM_THREADS): OMP_NUM_THREADS where it is set, else ``default``; with neither, torch's own choice."""
    if default is not None:
        os.environ.setdefault("OMP_NUM_THREADS", str(default))
    if "OMP_NUM_THREADS" in os.environ:
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def run_cell_in_worker(spec: GridSpec, cell: Cell) -> str:
    """Run ``cell`` of ``spec`` here; a failure is recorded in the cell's ``error.txt`` and re-raised."""
    from bench.grid.progress import GridProgress
    from bench.pipeline.cell import run_cell
    from bench.pipeline.context import GridContext

    console.configure()
    clear_error(spec.results, cell.run_id)
    try:
        grid = GridContext.open(spec, worker=True)
        inputs = grid.fold_inputs([cell.fold])[cell.fold]
        progress = GridProgress([cell.planned], set())
        return run_cell(cell, inputs, grid, progress)
    except Exception as err:
        record_error(spec.results, cell.run_id, err)
        raise
