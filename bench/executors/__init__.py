"""Where the cells of a grid run, all behind one interface, ``(spec or grid, cells, complete, options)``:
``inline`` (one after another in this process), ``local`` (worker processes on this machine) and ``slurm`` (one job
per cell). :mod:`bench.executors.jobs` keeps what the executors record about each cell (job id, error, log) and tells
a cell's state for ``bench status``; :mod:`bench.executors.show` prints plans and states.
"""
