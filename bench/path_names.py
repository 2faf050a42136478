"""Names that become file or folder names (dataset names, case ids, run ids, model and KD names): the one place
that decides whether a name may be used as a path component, or turns it into one.

A name from a data set or the command line is validated (:func:`path_component`) where it identifies a file
(a case's prediction and cache folder, the splits file of a data set) so that two names never land in one file,
and slugified (:func:`slugify`) where it is only a label inside a longer name (the fields of a run id).
"""

from __future__ import annotations

import re

from bench.errors import BenchError

_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")
# File systems allow 255 bytes per name; segkd-bench adds up to about 50 to a name (a cache key, a temporary name's
# process id and random part, a file ending), so a longer name fails deep in a run (ENAMETOOLONG).
MAX_NAME_BYTES = 200


def slugify(text: str) -> str:
    """Filesystem-safe on Linux, macOS and Windows; ``__`` is kept free as the run-id field separator."""
    slug = re.sub(r"[^A-Za-z0-9.+=-]+", "_", str(text)).strip("._")
    return re.sub(r"_{2,}", "_", slug) or "x"


def is_path_component(name: str) -> bool:
    """True when ``name`` names one file or folder inside its parent: not empty, not ``.``/``..``, no separator or
    control character, no drive prefix, at most :data:`MAX_NAME_BYTES` bytes."""
    return (
        bool(name)
        and name not in {".", ".."}
        and not _UNSAFE.search(name)
        and not re.match(r"^[A-Za-z]:", name)
        and len(name.encode("utf-8", "surrogatepass")) <= MAX_NAME_BYTES
    )


def path_component(name: str, what: str) -> str:
    """``name`` unchanged when it is a safe single file or folder name, else a BenchError naming ``what``."""
    if not isinstance(name, str) or not is_path_component(name):
        shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:60] + "..."
        raise BenchError(
            f"{what} {shown} cannot be used as a file name (it must not be empty, '.', '..', longer than "
            f"{MAX_NAME_BYTES} bytes, or hold '/', '\\\\' or control characters)"
        )
    return name
