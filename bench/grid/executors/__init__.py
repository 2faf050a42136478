"""Where the cells of a grid run: ``local`` (worker processes on this machine) and ``slurm`` (one job per cell);
the default ``inline`` executor is :meth:`bench.training.runner.GridRunner.run`."""
