"""The error type of the model layer."""

from __future__ import annotations


class ModelError(ValueError):
    """A network cannot be built or run with the given arguments (a width, a patch, a channel count).

    A ``ValueError`` so that callers treating bad arguments generically still catch it; ``bench`` reports it as
    one line with exit code 2.
    """
