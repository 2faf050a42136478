"""Errors that the CLI reports as one clear line instead of a traceback."""

from __future__ import annotations


class BenchError(Exception):
    """A problem with the user's input or environment; ``bench`` prints the message and exits with ``exit_code``."""

    exit_code = 2


class DataError(BenchError):
    """One or more bad data files (reported by ``bench data check``); exit code 1."""

    exit_code = 1
