"""How deeply a value read from the user's input nests: lists in lists (``--set``, ``--kd``, experiment files) and
JSON objects in objects (baselines, summaries, specs).

Python's parsers stop at the recursion limit with a RecursionError (about 1000 levels), and so would the code that
walks a parsed value (the canonical component text, ``json.dumps`` for a run id's hash). Nothing segkd-bench reads
needs more than a few levels, so a value nested deeper than :data:`MAX_NESTING` is refused in one line naming where
it came from, whether the parser or the check finds it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from bench.errors import BenchError

MAX_NESTING = 16  # a patch is 1 level, a table of factory arguments 3; 16 leaves room for any real value


def nesting(value: Any) -> int:
    """The depth of ``value``: 0 for a scalar, 1 for a flat list or object; counted without recursing."""
    depth, level = 0, [value]
    while level:
        containers = [v for v in level if isinstance(v, list | tuple | dict)]
        if not containers:
            return depth
        depth += 1
        level = [x for c in containers for x in (c.values() if isinstance(c, dict) else c)]
        if depth > MAX_NESTING:
            return depth
    return depth


def check_nesting(value: Any, what: str) -> Any:
    """``value`` unchanged, or a BenchError when it nests deeper than :data:`MAX_NESTING`."""
    if nesting(value) > MAX_NESTING:
        raise BenchError(f"{what} nests lists or tables deeper than {MAX_NESTING} levels")
    return value


@contextlib.contextmanager
def too_deep_as_error(what: str) -> Iterator[None]:
    """A RecursionError of the parser inside the block as one BenchError line naming ``what``."""
    try:
        yield
    except RecursionError:
        raise BenchError(f"{what} nests lists or tables deeper than {MAX_NESTING} levels (too deep to read)") from None
