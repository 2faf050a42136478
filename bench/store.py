"""The results store: one directory per run plus an SQLite index of runs and per-case metrics.

The format is documented in ``docs/results-store.md``; the paths are those of :mod:`bench.store_layout` (``layout``),
and the store writes a run's records: ``write_config``, ``write_env`` and ``write_spec`` as the run starts (the
trainer writes its log and checkpoints, the training stage ``weights.pt``: torch files are written by
``bench.training.checkpoint``, which the store, below the trainer, does not import), then ``record_run`` its
metrics and :class:`RunSummary`.

The run directories are the truth; the database is an index of them. ``record_run`` writes the files atomically and
then replaces the run's rows in one transaction. A writer killed between the two leaves the index stale, never corrupt:
reads through ``per_case`` re-index any complete run whose summary is missing from or differs from the index.
Workers of a grid on a shared (network) filesystem open the store with ``index=False``: they write run directories
only, and the index is written by one process at a time on the submitting side (``bench run``, ``bench status``,
``bench report``), which refreshes it from the run directories.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from bench import console
from bench.atomic import atomic_write_json, atomic_write_text, refuse_links, to_jsonable
from bench.errors import BenchError, disk_full_error
from bench.path_names import slugify
from bench.run_summary import SUMMARY_KEYS, RunSummary
from bench.store_layout import ResultsLayout, RunPaths

if TYPE_CHECKING:
    from bench.deploy.spec import DeploySpec

# One row per case and organ: written by bench.metrics, stored as per_case.csv (docs/metrics.md).
PER_CASE_COLUMNS = ["case", "label", "name", "dice", "hd95", "status"]
TRAIN_LOG_COLUMNS = ["iteration", "loss", "seg_loss", "kd_loss", "lr", "val_dice", "seconds"]
BUSY_TIMEOUT_MS = 60_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    model TEXT, kd TEXT, teacher TEXT, seed INTEGER, dataset TEXT, preset TEXT, preset_hash TEXT,
    device TEXT, params INTEGER, gmacs REAL, latency_ms_median REAL, peak_mem_mb REAL,
    dice_mean REAL, hd95_mean REAL, n_cases INTEGER, created TEXT,
    summary_sha1 TEXT NOT NULL, summary_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS per_case (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    case_id TEXT NOT NULL, label INTEGER, name TEXT, dice REAL, hd95 REAL, status TEXT
);
CREATE INDEX IF NOT EXISTS per_case_run ON per_case(run_id);
"""
# Columns added after the first version of the schema: an older bench.sqlite gets them on opening (NULL in its rows
# until `refresh_index` or a new record rewrites them). The argument tables are JSON text. Each column of `runs`
# named after a RunSummary key holds that key's value.
ADDED_RUN_COLUMNS = [
    ("fold", "INTEGER"),
    ("teacher_run", "TEXT"),
    ("model_kwargs", "TEXT"),
    ("kd_kwargs", "TEXT"),
    ("teacher_kwargs", "TEXT"),
]


def make_run_id(model: str, kd: str, teacher: str | None, seed: int, dataset: str, preset_hash: str) -> str:
    """``synthetic__lcovnet__kd-ca+ms__t-unet3d__s0__3f2a9c1b``; no ``t-`` field when there is no teacher."""
    parts = [slugify(dataset), slugify(model), f"kd-{slugify(kd)}"]
    if teacher:
        parts.append(f"t-{slugify(teacher)}")
    parts += [f"s{int(seed)}", slugify(preset_hash)[:8]]
    return "__".join(parts)


def _is_busy(err: sqlite3.Error) -> bool:
    message = str(err).lower()
    return "locked" in message or "busy" in message


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _add_column(conn: sqlite3.Connection, name: str, kind: str) -> None:
    """``ALTER TABLE runs ADD COLUMN``; another process opening the same old store may have added it just before."""
    try:
        conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
    except sqlite3.OperationalError as err:
        if "duplicate column" not in str(err).lower():
            raise


def _table_columns(conn: sqlite3.Connection) -> list[str]:
    """The columns of the ``runs`` table, in its order (an older index has the added ones last)."""
    return [row[1] for row in conn.execute("PRAGMA table_info(runs)")]


def _db_value(value: Any) -> Any:
    value = to_jsonable(value)
    return value if value is None or isinstance(value, (int, float, str)) else json.dumps(value)


class ResultsStore:
    """Run directories plus the SQLite index under ``root``; see the module docstring for the layout."""

    def __init__(self, root: Path | str = "results", index: bool = True) -> None:
        """``index=False``: write run directories only and never open the SQLite index (a worker of a grid on a
        shared filesystem; readers bring the index up to date from the run directories)."""
        self.root = Path(root)
        self.layout = ResultsLayout(self.root)
        self.index = index
        self.db_path = self.layout.index
        self.skipped: dict[str, str] = {}  # run id -> why its files cannot be read (reported once, then left out)
        # A store that exists but cannot be written (a read-only copy of someone's results) is opened for reading:
        # its run files are read directly and the index is neither updated nor needed.
        self.readonly = self.root.is_dir() and not os.access(self.root, os.W_OK | os.X_OK)
        if self.readonly:
            return
        try:
            self.layout.runs.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise BenchError(f"results directory {self.root} cannot be created: {err.strerror or err}") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise BenchError(f"results directory {self.root} is not writable")
        if index:
            self._init_db()

    def _writable(self) -> None:
        if self.readonly:
            raise BenchError(f"results directory {self.root} is read-only; runs need a writable store (--results DIR)")

    def _init_db(self) -> None:
        """Switch the database to WAL (a persistent setting) and create the tables.

        Processes creating a fresh database at the same moment can get "database is locked" from the journal-mode
        switch without SQLite's busy handler being called, so this step retries until the busy timeout.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            conn = self._open()
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
                present = set(_table_columns(conn))
                for name, kind in ADDED_RUN_COLUMNS:
                    if name not in present:
                        _add_column(conn, name, kind)
                return
            except sqlite3.DatabaseError as err:
                if not _is_busy(err) or time.monotonic() > deadline:
                    raise self._db_error(err) from None
            finally:
                conn.close()
            time.sleep(random.uniform(0.01, 0.1))

    def _db_error(self, err: sqlite3.Error) -> BenchError:
        if "full" in str(err).lower():  # SQLITE_FULL: "database or disk is full"
            return disk_full_error(self.db_path)
        if _is_busy(err):
            return BenchError(
                f"results database {self.db_path} stayed locked by another process for {BUSY_TIMEOUT_MS // 1000} s"
            )
        return BenchError(
            f"results database {self.db_path} is unusable: {err}; it only indexes the run folders, so deleting it "
            f"is safe: the next command rebuilds it from {self.layout.runs}"
        )

    def _open(self) -> sqlite3.Connection:
        for path in (self.db_path, *(self.db_path.with_name(self.db_path.name + s) for s in ("-wal", "-shm"))):
            refuse_links(path, itself=True)  # SQLite would write through a link
        try:
            conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as err:
            raise BenchError(
                f"cannot open results database {self.db_path}: {err}; it only indexes the run folders, so deleting "
                f"it is safe: the next command rebuilds it from {self.layout.runs}"
            ) from None
        return conn

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode; callers open explicit ``BEGIN IMMEDIATE`` transactions to write."""
        conn = self._open()
        try:
            yield conn
        except sqlite3.DatabaseError as err:
            raise self._db_error(err) from None
        finally:
            conn.close()

    def paths(self, run_id: str) -> RunPaths:
        """The files of run ``run_id`` (a BenchError when the id is not a single folder name); nothing is created."""
        return self.layout.run(run_id)

    def run_dir(self, run_id: str) -> Path:
        """``root/runs/<run_id>``, created if needed (a link there is refused)."""
        path = self._to_write(run_id).dir
        refuse_links(path, itself=True)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _to_write(self, run_id: str) -> RunPaths:
        """The run's files for writing; the atomic writers create its folder."""
        self._writable()
        return self.paths(run_id)

    def is_complete(self, run_id: str) -> bool:
        return self.paths(run_id).summary.is_file()

    def write_config(self, run_id: str, config: dict[str, Any]) -> None:
        """``config.json``: what the run was asked to train (docs/results-store.md)."""
        atomic_write_json(self._to_write(run_id).config, config)

    def write_env(self, run_id: str, env: dict[str, Any]) -> None:
        """``env.json``: the machine and software the run ran on (``bench.environment``)."""
        atomic_write_json(self._to_write(run_id).env, env)

    def write_spec(self, run_id: str, spec: DeploySpec) -> None:
        """``preprocessing.json``: what ``bench predict`` and ``bench export`` need besides the weights."""
        spec.write(self._to_write(run_id).spec)

    def reset_run(self, run_id: str) -> None:
        """Discard what an earlier training of the run left (checkpoints, log, weights, summary, predictions), for
        ``--force`` and ``--restart``; the run is not complete afterwards."""
        paths = self._to_write(run_id)
        for path in paths.training_outputs():
            path.unlink(missing_ok=True)
        shutil.rmtree(paths.predictions, ignore_errors=True)

    def summary(self, run_id: str) -> RunSummary:
        """The summary of a complete run; a BenchError naming the file when it cannot be read."""
        path = self.paths(run_id).summary
        try:
            return RunSummary.read(path, run_id)
        except OSError as err:
            raise BenchError(f"cannot read {path}: {err.strerror or err}") from None

    def record_run(self, run_id: str, summary: RunSummary, per_case: pd.DataFrame) -> None:
        """Write ``per_case.csv`` then ``summary.json`` atomically, then replace the run's rows in one transaction.

        An earlier ``summary.json`` is removed first, so a re-recorded run is never complete with mismatched files.
        A summary that would not read back (a value of the wrong type) is refused before anything is written.
        """
        missing = [c for c in PER_CASE_COLUMNS if c not in per_case.columns]
        if missing:
            raise ValueError(f"per_case for run {run_id} lacks columns {missing}; need {PER_CASE_COLUMNS}")
        if summary.run_id != run_id:
            raise ValueError(f"summary run_id {summary.run_id!r} does not match {run_id!r}")
        summary_text = summary.to_json()
        stored = RunSummary.from_dict(json.loads(summary_text), f"summary of run {run_id}")
        paths = self._to_write(run_id)
        paths.summary.unlink(missing_ok=True)
        atomic_write_text(paths.per_case, per_case[PER_CASE_COLUMNS].to_csv(index=False))
        atomic_write_text(paths.summary, summary_text)
        if not self.index:
            return
        with self._connect() as conn:
            self._index(conn, stored, summary_text, per_case)

    def refresh_index(self) -> None:
        """Bring the index up to date with the run directories (runs recorded by workers with ``index=False``)."""
        if not self.readonly:
            with self._connect() as conn:
                self._sync_index(conn)

    @staticmethod
    def _index(conn: sqlite3.Connection, summary: RunSummary, summary_text: str, per_case: pd.DataFrame) -> None:
        """Replace the rows of ``summary``'s run; ``summary_text`` is its file, kept whole in ``summary_json``."""
        run_id = summary.run_id
        rows = [
            (
                run_id,
                str(r.case),
                None if pd.isna(r.label) else int(r.label),
                None if pd.isna(r.name) else str(r.name),
                _db_value(r.dice),
                _db_value(r.hd95),
                None if pd.isna(r.status) else str(r.status),
            )
            for r in per_case[PER_CASE_COLUMNS].itertuples(index=False)
        ]
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM per_case WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
            keys = [c for c in _table_columns(conn) if c in SUMMARY_KEYS]
            columns = [*keys, "summary_sha1", "summary_json"]
            values = [*(_db_value(getattr(summary, c)) for c in keys), _sha1(summary_text), summary_text]
            conn.execute(f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", values)
            conn.executemany("INSERT INTO per_case VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def summaries(self) -> list[RunSummary]:
        """Every readable complete run's summary, sorted by run id.

        A run whose ``summary.json`` or ``per_case.csv`` cannot be read, or whose summary holds a value of the wrong
        type, is left out with a warning on stderr naming the file (see ``skipped``), so that one broken run does not
        hide all the others.
        """
        out = []
        for run_id in self.layout.complete_run_ids():
            summary = self._summary(run_id)
            if summary is not None:
                out.append(summary)
        return out

    def _summary(self, run_id: str) -> RunSummary | None:
        """The run's summary, or None when it is being re-recorded right now or its files are broken."""
        if run_id in self.skipped:
            return None
        paths = self.paths(run_id)
        try:
            summary = RunSummary.read(paths.summary, run_id)
            self._read_per_case_csv(paths.per_case)
        except FileNotFoundError as err:
            if Path(err.filename or "") == paths.summary:  # being re-recorded right now: not complete
                return None
            return self._skip(run_id, f"{err.filename}: missing")
        except BenchError as err:
            return self._skip(run_id, str(err))
        except OSError as err:
            return self._skip(run_id, f"cannot read {paths.summary}: {err}")
        return summary

    def _skip(self, run_id: str, why: str) -> None:
        self.skipped[run_id] = why
        console.warning(f"run {run_id} left out: {why}")

    def _sync_index(self, conn: sqlite3.Connection) -> None:
        """Re-index complete runs that a killed writer left out of (or stale in) the database; drop deleted runs."""
        indexed = dict(conn.execute("SELECT run_id, summary_sha1 FROM runs").fetchall())
        on_disk = set()
        for run_id in self.layout.complete_run_ids():
            paths = self.paths(run_id)
            if self._summary(run_id) is None:  # incomplete right now, or broken: warned about, its rows left alone
                if run_id in self.skipped:
                    on_disk.add(run_id)
                continue
            try:
                text = paths.summary.read_text(encoding="utf-8")
            except FileNotFoundError:  # removed by a concurrent re-record; it is incomplete now
                continue
            on_disk.add(run_id)
            if indexed.get(run_id) != _sha1(text):
                summary = RunSummary.from_dict(json.loads(text), str(paths.summary), run_id)
                self._index(conn, summary, text, self._read_per_case_csv(paths.per_case))
        gone = [(r,) for r in indexed if r not in on_disk]
        if gone:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("DELETE FROM per_case WHERE run_id = ?", gone)
            conn.executemany("DELETE FROM runs WHERE run_id = ?", gone)
            conn.execute("COMMIT")

    @staticmethod
    def _read_per_case_csv(path: Path) -> pd.DataFrame:
        try:
            frame = pd.read_csv(path, dtype={"case": str, "name": str, "status": str})
        except FileNotFoundError:
            return pd.DataFrame(columns=PER_CASE_COLUMNS)
        except (OSError, ValueError) as err:
            raise BenchError(f"cannot read {path}: {' '.join(str(err).split())}") from None
        missing = [c for c in PER_CASE_COLUMNS if c not in frame.columns]
        if missing:
            raise BenchError(f"{path} lacks the column(s) {', '.join(missing)}")
        try:
            frame[["dice", "hd95"]] = frame[["dice", "hd95"]].astype(float)
            frame["label"] = frame["label"].astype("Int64")
        except (ValueError, TypeError) as err:
            raise BenchError(f"{path} holds a value that is not a number ({err})") from None
        return frame[PER_CASE_COLUMNS]

    def per_case(self, run_id: str | None = None) -> pd.DataFrame:
        """Per-case, per-label metrics in long format: ``run_id, case, label, name, dice, hd95, status``."""
        if self.readonly:
            return self._per_case_from_files(run_id)
        with self._connect() as conn:
            self._sync_index(conn)
            query = "SELECT run_id, case_id, label, name, dice, hd95, status FROM per_case"
            params: tuple = ()
            if run_id is not None:
                query += " WHERE run_id = ?"
                params = (run_id,)
            rows = conn.execute(query + " ORDER BY run_id, rowid", params).fetchall()
        frame = pd.DataFrame(rows, columns=["run_id", *PER_CASE_COLUMNS])
        frame = frame[~frame["run_id"].isin(list(self.skipped))].reset_index(drop=True)
        frame["label"] = frame["label"].astype("Int64")
        frame[["dice", "hd95"]] = frame[["dice", "hd95"]].astype(float)
        return frame

    def _per_case_from_files(self, run_id: str | None) -> pd.DataFrame:
        """``per_case`` read from the run folders (a read-only store, whose index cannot be brought up to date)."""
        frames = []
        for rid in [run_id] if run_id is not None else self.layout.complete_run_ids():
            if self._summary(rid) is not None:
                frame = self._read_per_case_csv(self.paths(rid).per_case)
                frames.append(frame.assign(run_id=rid)[["run_id", *PER_CASE_COLUMNS]])
        if not frames:
            return pd.DataFrame(columns=["run_id", *PER_CASE_COLUMNS]).astype(
                {"label": "Int64", "dice": float, "hd95": float}
            )
        return pd.concat(frames, ignore_index=True)

    def train_log(self, run_id: str) -> pd.DataFrame | None:
        """The run's ``train_log.csv`` (``val_dice`` NaN between validations), or None when there is none yet."""
        path = self.paths(run_id).train_log
        try:
            frame = pd.read_csv(path)
        except (FileNotFoundError, pd.errors.EmptyDataError):
            return None
        except (OSError, ValueError) as err:
            console.warning(f"training curve of run {run_id} left out: cannot read {path}: {err}")
            return None
        if not {"iteration", "loss"} <= set(frame.columns):
            console.warning(f"training curve of run {run_id} left out: {path} lacks iteration/loss")
            return None
        numeric = [c for c in TRAIN_LOG_COLUMNS if c in frame.columns]
        values = frame[numeric].apply(pd.to_numeric, errors="coerce")
        values = values.where(values.abs() != float("inf"))
        bad = int((values.isna() & frame[numeric].notna()).sum().sum())
        if bad:
            console.warning(f"training curve of run {run_id}: {bad} value(s) of {path} are not numbers; left out")
        return frame.assign(**{c: values[c] for c in numeric})
