"""Atomic file writes: the one way segkd-bench writes a file that a reader or a crash may see half-written.

Every writer gets a temporary path in the target's folder; when it has written there, the file is flushed to disk,
renamed over the target (``os.replace``, atomic on POSIX and Windows) and the folder is flushed so that the rename
survives a power cut. Readers, and a crash at any moment, see the old file or the new one. A full disk is a
``DiskFullError`` naming the target.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import disk_full_as_error


@contextlib.contextmanager
def atomic_path(path: Path | str, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer to create; it replaces ``path`` if the block succeeds.

    ``suffix`` (default: ``path``'s own suffix) ends the temporary name, for writers that pick a format by it
    (SimpleITK, matplotlib). The temporary file is removed whatever happens.
    """
    path = Path(path)
    ending = path.suffix if suffix is None else suffix
    # A name of our own rather than mkstemp: the file gets the usual 0o666 & ~umask permissions, not 0o600.
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp{ending}"
    try:
        with disk_full_as_error(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            _fsync_file(tmp)
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "xb") as fh:
        fh.write(data)


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write ``text`` as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, obj: Any) -> None:
    """Pretty JSON (indent=2, keys in insertion order); NaN and infinities become null (``to_jsonable``)."""
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays unwrapped, tuples to lists, NaN and +-inf to None; any other object
    that JSON cannot hold (a path, a ``torch.device``) becomes its ``str``."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int)):
        return obj
    return None if obj is pd.NA else str(obj)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # directories cannot be opened on Windows; the rename is still atomic there
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
