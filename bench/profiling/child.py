"""A child process run to completion with its wall time and its own peak resident memory."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Runs the command as its own child and writes that grandchild's ru_maxrss (kB) and exit code to argv[1]. Why a
# wrapper: Linux carries a process's peak RSS across fork and exec (exec keeps the larger of the old address
# space's high-water mark and the new one's), so a child started straight from a large process (a benchmark holding
# networks and CTs) reports the parent's size when that is larger: three `bench predict` runs of different cost all
# "peaked" at the benchmark's own 6449 MB. Forked from this small interpreter, the command's figure is its own.
_WRAPPER = (
    "import os, subprocess, sys\n"
    "proc = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(proc.pid, 0)\n"
    "proc.returncode = os.waitstatus_to_exitcode(status)\n"
    "open(sys.argv[1], 'w').write(f'{usage.ru_maxrss} {proc.returncode}')\n"
)


@dataclass(frozen=True)
class ChildRun:
    """What a finished child process cost: wall seconds, peak resident memory (MB) and its exit code."""

    wall_s: float
    peak_rss_mb: float
    returncode: int


def run_child(command: list[str], stdout: Path, stderr: Path | None = None) -> ChildRun:
    """Run ``command`` with its standard output in ``stdout`` (and its standard error there too, unless ``stderr``
    names another file). The peak memory is the command's own ``ru_maxrss`` (the kernel's high-water mark, which
    sampling the RSS can miss), read by a small wrapper process (see ``_WRAPPER``)."""
    errors = stderr.open("w") if stderr else contextlib.nullcontext(subprocess.STDOUT)
    with tempfile.TemporaryDirectory(prefix="segkd-child-") as tmp, stdout.open("w") as out, errors as err:
        record = Path(tmp) / "usage"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", _WRAPPER, str(record), *command], stdout=out, stderr=err, check=True)
        wall = time.perf_counter() - start
        max_rss_kb, returncode = (int(v) for v in record.read_text().split())
    return ChildRun(wall, max_rss_kb / 1024, returncode)
