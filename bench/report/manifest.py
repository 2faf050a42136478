"""Which files of a report folder ``bench report`` wrote: ``.bench-report.json`` lists each with its SHA-1, so that a
report written into a folder the user named (``--out DIR``) never replaces a file of the user's. A file under one of
the report's names that is not listed with its content (the user's own ``report.md``, or a report edited since)
stops the report before anything is written."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bench.atomic import atomic_write_json
from bench.errors import BenchError

MANIFEST = ".bench-report.json"
NAMES = ("report.md", "report.html", "tables.tex", "main_table.csv", "per_organ.csv", "runs.csv", "deployment.csv")
FOLDERS = ("plots", "ablation")


def check_replaceable(out: Path) -> None:
    """A BenchError naming the first file under ``out`` that the report would replace but did not write."""
    written = _read(out)
    for path in _report_files(out):
        name = path.relative_to(out).as_posix()
        if written.get(name) != _sha1(path):
            raise BenchError(
                f"--out {out}: {name} was not written by bench report (or was edited since); pass another --out or "
                "move the file away"
            )


def record(out: Path) -> None:
    """List the report files now under ``out`` (written, or left from an earlier report) as the report's own."""
    atomic_write_json(out / MANIFEST, {p.relative_to(out).as_posix(): _sha1(p) for p in _report_files(out)})


def _report_files(out: Path) -> list[Path]:
    files = [out / name for name in NAMES if (out / name).is_file()]
    for folder in FOLDERS:
        if (out / folder).is_dir():
            files += sorted(p for p in (out / folder).rglob("*") if p.is_file())
    return files


def _read(out: Path) -> dict[str, str]:
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()
