"""The one writer of segkd-bench: every file the toolkit writes goes through this module.

A write (:func:`atomic_path` for a library that writes the file itself, :func:`atomic_write_bytes` and its text and
JSON forms for our own bytes):

1. refuses a symbolic link among the folders below a protected folder (a results store, a report folder:
   :func:`protect`), so nothing inside a results folder is written through a link; the file itself is a new
   temporary name, renamed over the target (a link there is replaced, never followed). Files opened in place (the
   run lock, a worker's log) go through :func:`open_in_place` (``O_NOFOLLOW``).
2. writes the temporary file beside the target and verifies it before the rename: our bytes by their size, a
   library's file by the ``verify`` read-back its caller gives (non-empty at least). Libraries do not always say
   that a write failed: SimpleITK's NIfTI writer prints ``** ERROR: NWAD`` and returns, torch's zip writer raises
   "unexpected pos", numpy "N requested and M written", all without an errno.
3. flushes the file, renames it over the target (``os.replace``, atomic on POSIX and Windows) and flushes the folder,
   so readers and a crash at any moment see the old file or the new one.

A full disk is a :class:`DiskFullError` naming the target: from the errno (ENOSPC, EDQUOT), from the free space
before a write of known size, and, when a library hid the errno or wrote a short file, from the free space left
while its temporary file still exists. A folder that cannot be written (read-only, not a folder, a name too long,
a link) is one :class:`BenchError` line naming it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import secrets
import shutil
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import BenchError, disk_full_error, is_disk_full

if TYPE_CHECKING:
    import numpy as np

# Free space below which a write that failed without an errno, or wrote a short file, is taken for a full disk: a
# library that hides the errno leaves its temporary file holding what fitted, so the file system is at or near 0.
DISK_FULL_MARGIN = 1 << 20
# Errors of the folder or name written to, not of the disk: bad input (an output folder the user named).
_UNWRITABLE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EISDIR,
                      errno.ENAMETOOLONG, errno.ELOOP}  # fmt: skip
_PROTECTED: set[str] = set()


def protect(folder: Path | str) -> None:
    """Never write through a symbolic link below ``folder`` (itself excluded: the user chose it) from now on in this
    process. The results layout protects its root, ``bench report`` its output folder."""
    _PROTECTED.add(os.path.abspath(folder))


def refuse_links(path: Path | str, itself: bool = False) -> None:
    """A :class:`BenchError` when a folder between a protected folder and ``path`` (and, with ``itself``, ``path``)
    is a symbolic link. What does not exist yet is created by the writer as a real folder."""
    target = os.path.abspath(path)
    for root in _PROTECTED:
        if not target.startswith(root + os.sep):
            continue
        parts = Path(target).relative_to(root).parts
        probe = root
        for part in parts if itself else parts[:-1]:
            probe = os.path.join(probe, part)
            try:
                mode = os.lstat(probe).st_mode
            except OSError:
                break
            if stat.S_ISLNK(mode):
                raise BenchError(
                    f"{probe} is a symbolic link; segkd-bench never writes through a link inside {root} "
                    "(remove the link, or point --results at the real folder)"
                )


def open_in_place(path: Path | str, flags: int, mode: int = 0o644) -> int:
    """``os.open`` of a file that is written where it is (not renamed into place), its folder created: never
    through a link (``O_NOFOLLOW``, and no link among the protected folders above it), and only a regular file."""
    path = Path(path)
    _make_parent(path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW, mode)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise BenchError(f"{path} is a symbolic link; segkd-bench never writes through it (remove it)") from None
        raise _write_failure(path, err) or err from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BenchError(f"{path} is not a regular file; remove it")
    return fd


def writable_folder(folder: Path | str, what: str) -> Path:
    """Create ``folder`` (and its parents) for an output named by the user, or one line saying why it cannot be:
    checked before anything is computed or written."""
    folder = Path(folder)
    refuse_links(folder, itself=True)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _write_failure(folder, err, what) or err from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BenchError(f"{what} {folder}: the folder is not writable")
    return folder


@contextlib.contextmanager
def atomic_path(
    path: Path | str, suffix: str | None = None, verify: Callable[[Path], None] | None = None
) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer to create; it replaces ``path`` if the block succeeds and
    the file verifies.

    ``suffix`` (default: ``path``'s own suffix) ends the temporary name, for writers that pick a format by it
    (SimpleITK, matplotlib). ``verify(tmp)`` reads the written file back and raises when it is short or corrupt;
    without it the file must not be empty. The temporary file is removed whatever happens.
    """
    path = Path(path)
    ending = path.suffix if suffix is None else suffix
    # A name of our own rather than mkstemp: the file gets the usual 0o666 & ~umask permissions, not 0o600.
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp{ending}"
    _make_parent(path)
    try:
        try:
            yield tmp
            _verify(tmp, verify)
            _fsync_file(tmp)
            os.replace(tmp, path)
        except BenchError:
            raise
        except Exception as err:
            failure = _write_failure(path, err)
            if failure is None:
                raise
            raise failure from None
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path``; refused up front when the file system has less room than ``data`` needs."""
    path = Path(path)
    _make_parent(path)
    free = free_bytes(path.parent)
    if free is not None and free < len(data):
        raise disk_full_error(path)

    def written_whole(tmp: Path) -> None:
        if tmp.stat().st_size != len(data):
            raise WriteFailedError(f"{tmp.stat().st_size} of {len(data)} bytes reached the disk")

    with atomic_path(path, verify=written_whole) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write ``text`` as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, obj: Any) -> None:
    """Pretty JSON (indent=2, keys in insertion order); NaN and infinities become null (``to_jsonable``)."""
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def atomic_save_array(path: Path | str, array: np.ndarray) -> None:
    """``np.save`` of ``array``, read back (as a memory map: its header and length) before it replaces ``path``."""

    import numpy as np

    def same_array(tmp: Path) -> None:
        back = np.load(tmp, mmap_mode="r")
        if back.shape != array.shape or back.dtype != array.dtype:
            raise WriteFailedError(f"it reads back as {back.dtype}{list(back.shape)}")

    # Through a Python-level writer: numpy's own file path (ndarray.tofile) reports a short write without errno.
    with atomic_path(path, verify=same_array) as tmp, open(tmp, "xb") as fh:
        np.save(_Writer(fh), array, allow_pickle=False)


class _Writer:
    """A file seen by numpy as a plain stream (it then writes chunks with ``write``, whose errors keep their errno)."""

    def __init__(self, fh) -> None:
        self.write = fh.write


def free_bytes(folder: Path | str) -> int | None:
    """Free bytes on ``folder``'s file system for this user, or None when it cannot be told."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


class WriteFailedError(Exception):
    """A library said it could not write the file, or the file it wrote does not read back; raised inside
    :func:`atomic_path`, which makes it a full disk or one line naming the file."""


def _verify(tmp: Path, verify: Callable[[Path], None] | None) -> None:
    try:
        if verify is not None:
            verify(tmp)
        elif tmp.stat().st_size == 0:
            raise WriteFailedError("0 bytes reached the disk")
    except FileNotFoundError:
        raise WriteFailedError("the writer created no file") from None
    except WriteFailedError:
        raise
    except Exception as err:  # the library's reader, refusing what its writer left
        text = " ".join(str(err).split()) or type(err).__name__
        raise WriteFailedError(f"it does not read back: {text[:200]}") from None


def _write_failure(path: Path, err: BaseException, what: str = "cannot write") -> BenchError | None:
    """``err`` from writing ``path`` as a one-line error (a full disk, an unwritable folder, a file that did not
    verify), or None when it is not a write failure (a bug: it keeps its traceback)."""
    if is_disk_full(err):
        return disk_full_error(path)
    if isinstance(err, OSError) and err.errno in _UNWRITABLE_ERRNOS:
        where = err.filename or path
        why = {errno.EEXIST: "exists and is not a folder", errno.ENOTDIR: "a part of the path is not a folder"}
        return BenchError(f"{what} {where}: {why.get(err.errno, err.strerror)}")
    if isinstance(err, (OSError, RuntimeError, WriteFailedError)):
        free = free_bytes(path.parent if path.parent.exists() else path)
        if free is not None and free < DISK_FULL_MARGIN:
            return disk_full_error(path)
    if isinstance(err, WriteFailedError):
        return BenchError(f"cannot write {path}: {err}; the file was not put in place")
    return None


def _make_parent(path: Path) -> None:
    refuse_links(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _write_failure(path, err) or err from None


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays unwrapped, tuples to lists, NaN and +-inf to None; any other object
    that JSON cannot hold (a path, a ``torch.device``) becomes its ``str``."""
    # numpy and pandas as far as they are loaded: an object of theirs exists only then, and the layout (which
    # imports this module) stays light for commands that never load them.
    np, pd = sys.modules.get("numpy"), sys.modules.get("pandas")
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if np is not None and isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if np is not None and isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int)):
        return obj
    return None if pd is not None and obj is pd.NA else str(obj)


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
