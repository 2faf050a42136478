"""Files of the data layer: JSON written atomically (``bench.atomic``) and leftovers of killed writers removed."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from bench.atomic import atomic_write_text


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


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
