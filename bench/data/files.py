"""Atomic file writes: everything goes to a temporary name in the target folder, then ``os.replace``."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_target(path: Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; it replaces ``path`` when the block ends without an exception.

    ``suffix`` (default: ``path``'s own suffix) ends the temporary name, for writers that pick a format by it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix if suffix is None else suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_target(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def remove_stale(folder: Path, pattern: str, age_s: float = 3600.0) -> None:
    """Delete entries of ``folder`` matching ``pattern`` that are older than ``age_s``: leftovers of killed writers."""
    if not Path(folder).is_dir():
        return
    for path in Path(folder).glob(pattern):
        try:
            if time.time() - path.stat().st_mtime > age_s:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        except OSError:
            continue  # another process removed or is still using it
