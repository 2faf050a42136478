"""segkd-bench: training, evaluation, profiling and reporting for 3D segmentation networks and KD methods."""

__version__ = "0.1.0"
