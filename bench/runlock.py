"""Exclusive ownership of a run: at most one process trains, evaluates and records a run directory at a time.

The owner holds an ``fcntl.flock`` on ``<run dir>/.lock`` and writes itself into that file (host, pid, start time
and, in a SLURM job, the job id) so that anyone else can say who holds the run. The kernel drops the lock when the
owner's process ends, even by SIGKILL or a crash, so a lock file left behind by a dead owner is stale by
construction: the next process simply takes it over (and overwrites the owner). flock works across processes of one
host and, on Linux, on NFS (where it is mapped to POSIX locks). A ``.lock`` that is a symbolic link is refused, not
followed: taking the lock truncates the file.

Use :meth:`RunLock.try_acquire` to skip runs that someone else holds (a pool of workers sharing one results store),
or :meth:`RunLock.acquire` to wait for them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from bench.atomic import open_in_place
from bench.store_layout import RunPaths


@dataclass(frozen=True)
class LockOwner:
    """Who holds a run."""

    host: str
    pid: int
    started: str  # ISO 8601, UTC
    job: str | None = None  # the SLURM job id of the owner, when it runs in one

    def __str__(self) -> str:
        job = f" (SLURM job {self.job})" if self.job else ""
        return f"pid {self.pid} on {self.host}{job} since {self.started}"

    @classmethod
    def me(cls) -> LockOwner:
        job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
        return cls(socket.gethostname(), os.getpid(), datetime.now(timezone.utc).isoformat(timespec="seconds"), job)


class RunLock:
    """The lock of one run directory; a context manager that waits for it."""

    def __init__(self, run_dir: Path) -> None:
        self.path = RunPaths(Path(run_dir)).lock
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this object owns the run."""
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the run if nobody holds it (a dead owner's lock counts as free); never waits."""
        return self._lock(blocking=False)

    def acquire(self, on_wait: Callable[[LockOwner | None], None] | None = None) -> None:
        """Take the run, waiting for its current owner to finish; ``on_wait(owner)`` is called once before waiting."""
        if self._lock(blocking=False):
            return
        if on_wait is not None:
            on_wait(self.owner())
        self._lock(blocking=True)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the descriptor releases the flock

    def owner(self) -> LockOwner | None:
        """The process that holds the run now, or None when it is free (or the owner has not written itself yet)."""
        if self._fd is not None:
            return self._read()
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:  # none yet, or a link that _lock refuses
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return self._read()
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None  # free: whatever the file says is a dead owner's
        finally:
            os.close(fd)

    def _lock(self, blocking: bool) -> bool:
        if self._fd is not None:
            return True
        fd = open_in_place(self.path, os.O_RDWR | os.O_CREAT)  # never through a link: it is truncated below
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.write(fd, (json.dumps(asdict(LockOwner.me())) + "\n").encode())
            os.fsync(fd)
        except OSError as err:  # a full disk, say: name the lock file
            os.close(fd)
            raise OSError(err.errno, err.strerror, str(self.path)) from None
        self._fd = fd
        return True

    def _read(self) -> LockOwner | None:
        try:
            data = json.loads(self.path.read_text())
            job = data.get("job")
            owner = LockOwner(str(data["host"]), int(data["pid"]), str(data["started"]))
            return owner if job is None else replace(owner, job=str(job))
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            return None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
