"""bench.profiling.child: a real child process, its exit code, its output files and its own peak memory."""

import sys
from pathlib import Path

from bench.profiling.child import run_child

# Touches every page of a 300 MB buffer, then frees it: a short peak that the end state no longer shows.
ALLOCATE = "import sys; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); del b; print('out'); " \
    "print('err', file=sys.stderr); sys.exit(3)"  # fmt: skip


def test_run_child_reports_the_childs_own_peak_and_exit_code(tmp_path: Path) -> None:
    child = run_child([sys.executable, "-c", ALLOCATE], tmp_path / "out.txt", tmp_path / "err.txt")
    assert child.returncode == 3
    assert child.peak_rss_mb >= 300
    assert child.wall_s > 0
    assert (tmp_path / "out.txt").read_text() == "out\n"
    assert (tmp_path / "err.txt").read_text() == "err\n"


def test_run_child_peak_is_neither_an_earlier_childs_nor_its_large_parents(tmp_path: Path) -> None:
    run_child([sys.executable, "-c", ALLOCATE], tmp_path / "big.txt")
    parent = bytearray(600 * 2**20)  # this process grows past 600 MB, and a child forked from it would report that
    parent[::4096] = b"x" * len(parent[::4096])
    small = run_child([sys.executable, "-c", "print('small')"], tmp_path / "small.txt")
    assert small.returncode == 0
    assert small.peak_rss_mb < 100
    assert (tmp_path / "small.txt").read_text() == "small\n"


def test_run_child_merges_standard_error_without_a_second_file(tmp_path: Path) -> None:
    run_child([sys.executable, "-c", ALLOCATE], tmp_path / "both.txt")
    assert sorted((tmp_path / "both.txt").read_text().split()) == ["err", "out"]
