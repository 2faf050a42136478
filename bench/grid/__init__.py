"""What to run: the grid spec (:mod:`bench.grid.spec`), the plan of independent cells it becomes
(:mod:`bench.grid.plan`) and the progress of a grid as it runs (:mod:`bench.grid.progress`). Pure: no torch.

One cell is run by :func:`bench.pipeline.cell.run_cell`; the executors in :mod:`bench.executors` decide where and
when.
"""
