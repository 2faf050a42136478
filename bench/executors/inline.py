"""``--executor inline`` (the default): the cells one after another in this process, in plan order; under
``torchrun`` every rank runs every cell (DDP), rank 0 writing."""

from __future__ import annotations

from bench.grid.plan import Cell
from bench.grid.progress import GridProgress
from bench.pipeline.cell import run_cell
from bench.pipeline.context import GridContext
from bench.pipeline.inputs import FoldInputs


def run_inline(grid: GridContext, inputs: dict[int, FoldInputs], cells: list[Cell], complete: set[str]) -> GridProgress:
    """Run every cell here (those in ``complete`` are skipped); returns the grid's progress, whose table summarises
    the runs. A failing cell stops the grid (what it completed is kept, and the same command resumes)."""
    progress = GridProgress([c.planned for c in cells], complete)
    for cell in cells:
        run_cell(cell, inputs[cell.fold], grid, progress)
    return progress
