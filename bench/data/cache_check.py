"""Cached cases checked before they are reused: an array of the preprocessing cache replaced, cut short or deleted
since it was written is rebuilt, never trained or evaluated on.

Each case folder's ``meta.json`` lists its arrays with their sizes and SHA-256 (``files``). Every reuse compares the
sizes and reads each array's header against the case's shape; a thorough check (``bench run --force``) also
compares the checksums, which catches an array replaced by another of the same size. Folders written before the list
existed get the header check.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from bench import console

ARRAYS = ("image.npy", "label.npy", "locations.npy")


def files_record(folder: Path) -> dict[str, dict[str, Any]]:
    """``{name: {"bytes": size, "sha256": digest}}`` of the case arrays in ``folder``, for its ``meta.json``."""
    return {name: {"bytes": (folder / name).stat().st_size, "sha256": _sha256(folder / name)}
            for name in ARRAYS if (folder / name).is_file()}  # fmt: skip


def reusable(folder: Path, thorough: bool = False) -> bool:
    """True when the cached case in ``folder`` is whole; a damaged one is removed (with a warning naming why), so
    that it is built again, and False is returned for it as for a missing one."""
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return False
    problem = _damage(folder, meta_path, thorough)
    if problem is None:
        return True
    console.warning(f"cached case {folder} is damaged ({problem}); building it again")
    shutil.rmtree(folder, ignore_errors=True)
    return False


def _damage(folder: Path, meta_path: Path, thorough: bool) -> str | None:
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        shape = tuple(meta["shape"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return "meta.json unreadable"
    recorded = meta.get("files") if isinstance(meta.get("files"), dict) else {}
    for name in recorded or ("image.npy",):
        path = folder / name
        if not path.is_file():
            return f"{name} missing"
        entry = recorded.get(name, {})
        if "bytes" in entry and path.stat().st_size != entry["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, {entry['bytes']} were written"
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            return f"{name} unreadable: {' '.join(str(err).split())[:120]}"
        if name != "locations.npy" and tuple(array.shape[-3:]) != shape:
            return f"{name} holds shape {list(array.shape)}, the case {list(shape)}"
        if thorough and "sha256" in entry and _sha256(path) != entry["sha256"]:
            return f"{name} differs from what was written (SHA-256)"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
