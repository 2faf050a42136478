"""The error policy of ``bench``: library code raises these types (or the model and KD layers' own
``models.ModelError`` / ``kd_methods.KDMethodError``), and ``bench/cli.py`` alone turns them into one line on stderr
and an exit code. The codes, as the README documents them:

- 0: success;
- 1: the command worked and found problems (``bench data check``: bad files; ``bench check``: a regression);
- 2: bad input: an argument, preset key, data file, checkpoint or results file that cannot be used;
- 3: the disk is full (the message names the path and the free space);
- 130: interrupted (Ctrl-C);
- 141: the reader of the output went away (``bench list | head -1``), as for a Unix tool stopped by SIGPIPE.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
from collections.abc import Iterator
from pathlib import Path

EXIT_OK, EXIT_FINDINGS, EXIT_INPUT, EXIT_DISK_FULL, EXIT_INTERRUPTED, EXIT_STDOUT_CLOSED = 0, 1, 2, 3, 130, 141
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class BenchError(Exception):
    """A problem with the user's input or environment; ``bench`` prints the message and exits with ``exit_code``."""

    exit_code = EXIT_INPUT


class DataError(BenchError):
    """A bad data file (missing, unreadable, truncated, inconsistent); bad input, exit code 2."""


class FindingsError(BenchError):
    """A checking command ran to the end and found problems (``bench data check``); exit code 1."""

    exit_code = EXIT_FINDINGS


class DiskFullError(BenchError):
    """A write failed because the file system is full; exit code 3."""

    exit_code = EXIT_DISK_FULL


def is_disk_full(err: BaseException) -> bool:
    """True for an ``OSError`` of a full file system or an exhausted quota."""
    return isinstance(err, OSError) and err.errno in _DISK_FULL_ERRNOS


def disk_full_error(path: Path | str | None) -> DiskFullError:
    """A :class:`DiskFullError` naming ``path`` and the free space left on its file system."""
    if not path:
        return DiskFullError("no space left on the device; the files written before are intact")
    where = probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = f"{shutil.disk_usage(probe).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    return DiskFullError(
        f"no space left on the device writing {where} ({free} on its file system); the files written before are intact"
    )


@contextlib.contextmanager
def disk_full_as_error(path: Path | str) -> Iterator[None]:
    """Turn a full-disk ``OSError`` raised inside the block into a :class:`DiskFullError` naming ``path``."""
    try:
        yield
    except OSError as err:
        if is_disk_full(err):
            raise disk_full_error(path) from None
        raise
