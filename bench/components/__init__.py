"""Models, KD methods and teachers named on the command line or in an experiment file, with their arguments:

- :mod:`~bench.components.syntax`: the syntax ``NAME:KEY=VALUE`` and its canonical text (no torch);
- :mod:`~bench.components.factory_args`: the arguments a registered factory takes, read from its signature and
  docstring, and the check of a component against them;
- :mod:`~bench.components.static_names`: registered names and strides read from the source files without importing
  torch, for the checks that must answer in a fraction of a second.
"""
