"""The benchmark grid as a plan of independent cells, and the executors that run the cells.

:mod:`bench.grid.plan` turns a :class:`~bench.training.runner.GridSpec` into cells (one run each, with the runs it
waits for); :meth:`bench.training.runner.GridRunner.run_cell` runs one cell end to end; the executors in
:mod:`bench.grid.executors` decide where and when: in this process (``inline``), in worker processes on this machine
(``local``) or as SLURM jobs (``slurm``). :mod:`bench.grid.jobs` keeps what the executors record about each cell
(job id, error) and tells a cell's state for ``bench status``.
"""
