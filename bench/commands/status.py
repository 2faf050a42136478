"""``bench status``: where each cell of the grids in a results store stands.

One row per cell the store knows (a run directory or a job record): complete, running, queued (a SLURM job waiting
for its turn or for the cells it needs), failed (with the tail of its error below the table), interrupted (a
checkpoint is left: running the same `bench run` again resumes it) or not started; the job id (SLURM), the elapsed
time (of training, for a complete cell) and the last line of the cell's log. Exit code 0 when every cell is complete,
1 otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="state of each run of the grids in a results store (also SLURM jobs)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--results", type=Path, default=Path("results"), help="results store (default results/)")
    p.set_defaults(func=status)


def status(args: argparse.Namespace) -> int:
    from bench.errors import BenchError
    from bench.executors.show import grid_states, status_table
    from bench.store import ResultsStore
    from bench.store_layout import ResultsLayout

    if not ResultsLayout(args.results).runs.is_dir():
        raise BenchError(f"--results {args.results} is not a results store (no runs/ in it)")
    ResultsStore(args.results).refresh_index()
    states = grid_states(args.results)
    print(status_table(states))
    return 0 if states and all(s.state == "complete" for s in states) else 1
