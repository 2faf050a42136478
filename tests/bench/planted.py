"""Planting bad input next to a finished results store and checking how `bench` fails (issue 11's contract).

Every planted case must: exit with the documented code, print exactly one error line naming the file or key and no
traceback, write nothing outside the results folder, and leave every file already in the store unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.bench.runutil import TINY_RUN, bench_cmd

SQLITE_FILES = ("bench.sqlite", "bench.sqlite-wal", "bench.sqlite-shm")


def tiny_run_args(data: Path, results: Path, *extra: str, iterations: int = 2) -> list[str]:
    return ["run", "--models", "lcovnet", "--data", str(data), "--results", str(results), *TINY_RUN,
            "--set", f"iterations={iterations}", "--set", "val_every=1", *extra]  # fmt: skip


def files(root: Path, skip: Path | None = None) -> dict[str, str]:
    """Relative path -> SHA-1 of every file under ``root`` (not following into ``skip``); SQLite files are
    compared by content (see :func:`index_rows`), not bytes."""
    out = {}
    if not root.exists():
        return out
    for path in sorted(root.rglob("*")):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        if path.is_file() and not path.is_symlink() and path.name not in SQLITE_FILES:
            out[str(path.relative_to(root))] = hashlib.sha1(path.read_bytes()).hexdigest()
    return out


def index_rows(results: Path) -> list:
    db = results / "bench.sqlite"
    if not db.exists():
        return []
    # immutable=1 for a store on a read-only mount, where SQLite cannot create the WAL's shared-memory file
    mode = "mode=ro" if os.access(results, os.W_OK) else "immutable=1"
    try:
        with sqlite3.connect(f"file:{db}?{mode}", uri=True) as conn:
            return sorted(conn.execute("SELECT run_id, summary_sha1 FROM runs").fetchall())
    except sqlite3.DatabaseError:  # a planted corrupt index: it must stay as unreadable as it was
        return [("<unreadable>", "")]


def copy_store(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest)
    return dest


def run_planted(
    root: Path, results: Path, args: list[str], code: int, names: list[str], timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run ``bench *args`` in an empty folder under ``root`` and check the contract above; ``names`` must all
    appear in the one error line."""
    cwd = root / "cwd"
    cwd.mkdir(exist_ok=True)
    store_before, index_before = files(results), index_rows(results)
    outside_before = files(root, skip=results)
    proc = subprocess.run(bench_cmd(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == code, f"exit {proc.returncode}: {proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert all(name in errors[0] for name in names), errors[0]
    store_after = files(results)
    assert {k: store_after.get(k) for k in store_before} == store_before, "a file already in the store changed"
    assert set(index_before) <= set(index_rows(results)), "a run left the index"
    assert files(root, skip=results) == outside_before, "a file was written outside the results folder"
    return proc


def run_id_for(data: Path, *extra: str, model: str = "lcovnet", kd: str = "none", teacher: str | None = None) -> str:
    """The run id that ``bench run`` gives ``tiny_run_args(data, ..., *extra)`` with seed 0."""
    import json

    from bench.store import make_run_id
    from bench.training.config import load_config

    args = tiny_run_args(data, Path("unused"), *extra)
    overrides = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    name = json.loads((data / "dataset.json").read_text())["name"]
    return make_run_id(model, kd, teacher, 0, name, load_config("smoke", overrides).hash())


class Evil:
    """Pickles to a call of ``os.system`` that creates ``marker``: what a malicious checkpoint would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


@contextlib.contextmanager
def mounted(target: Path, *options: str):
    """A real file system mounted at ``target`` (root only; skips the test where mounting is not allowed)."""
    target.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", *options, str(target)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a file system here: {proc.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)


def fill(folder: Path, leave: int) -> None:
    """Fill ``folder``'s file system up to ``leave`` free bytes."""
    stat = os.statvfs(folder)
    (folder / "filler").write_bytes(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))
