"""The tables of ``bench run --dry-run`` (the plan) and ``bench status`` (the cells' states)."""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from bench.executors.jobs import CellState, cell_state, known_runs, slurm_queue
from bench.grid.plan import Cell


def plan_table(cells: list[Cell], results: Path, force: bool = False) -> str:
    """One row per cell in the order of training: what it is, its run id, the cells it needs (by number), its state."""
    number = {c.run_id: i + 1 for i, c in enumerate(cells)}
    queue = slurm_queue()
    rows = []
    for i, cell in enumerate(cells, 1):
        state = cell_state(results, cell.run_id, queue).state
        if force and state == "complete":
            state = "complete, --force runs it again"
        needs = ", ".join(f"#{number[r]}" for r in cell.needs) or "-"
        rows.append([i, cell.label, cell.run_id, needs, state])
    return tabulate(rows, headers=["#", "cell", "run id", "needs", "state"], disable_numparse=True)


def grid_states(results: Path, run_ids: list[str] | None = None) -> list[CellState]:
    queue = slurm_queue()
    return [cell_state(results, run_id, queue) for run_id in (run_ids or known_runs(results))]


def status_table(states: list[CellState]) -> str:
    """The cells' states; a failed cell is followed by the tail of its error, indented."""
    rows = [[s.cell, s.run_id, s.state, s.job_id or "-", s.elapsed, _clip(s.last_line, 50)] for s in states]
    table = tabulate(rows, headers=["cell", "run id", "state", "job", "elapsed", "last log line"],
                     disable_numparse=True)  # fmt: skip
    errors = [f"{s.run_id} failed:\n" + "\n".join(f"    {line}" for line in s.error.splitlines())
              for s in states if s.state == "failed"]  # fmt: skip
    counts = {}
    for s in states:
        counts[s.state] = counts.get(s.state, 0) + 1
    total = ", ".join(f"{n} {state}" for state, n in counts.items())
    return "\n\n".join([table, *errors, f"{len(states)} cell(s): {total}"])


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
