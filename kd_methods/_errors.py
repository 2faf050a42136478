"""The error type of the KD-method layer."""

from __future__ import annotations


class KDMethodError(ValueError):
    """A KD method cannot be built or applied with the given arguments or network outputs.

    A ``ValueError`` so that callers treating bad arguments generically still catch it; ``bench`` reports it as
    one line with exit code 2.
    """
