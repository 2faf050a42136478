"""The stages of one cell of a grid, each a plain function with plain arguments, in the order a cell runs them:

- :mod:`~bench.pipeline.inputs`: the data set checked, split for a fold and preprocessed (shared by the cells);
- :mod:`~bench.pipeline.checks`: the grid's names, arguments and patch sizes, before anything is written;
- :mod:`~bench.pipeline.teacher`: the frozen teacher of a KD cell (a stored run's weights or a checkpoint);
- :mod:`~bench.pipeline.train`: the student (and KD method) built and trained, its final weights saved;
- :mod:`~bench.pipeline.evaluate`: per-case Dice and HD95 on the test split in each CT's own geometry;
- :mod:`~bench.pipeline.profile`: parameters, MACs, latency and memory, measured once per network in a fresh process;
- :mod:`~bench.pipeline.record`: what a run writes besides its checkpoints (config, environment, inference spec,
  summary);
- :mod:`~bench.pipeline.cell`: one cell end to end: the run lock, skip or resume, then the stages above.

The executors (:mod:`bench.executors`) decide where the cells run; :mod:`bench.training` holds the trainer.
"""
