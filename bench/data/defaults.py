"""Defaults of the synthetic data set, importable without numpy or SimpleITK (the CLI reads them for ``--help``)."""

SYNTH_VERSION = "synthetic-v1"
DATA_DIR_ENV = "SEGKD_DATA_DIR"
DEFAULT_CASES = 16
DEFAULT_SEED = 0
DEFAULT_SIZE = (48, 128, 128)
DEFAULT_SPACING = (2.5, 0.8, 0.8)
