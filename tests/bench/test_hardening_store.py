"""Issue 11, cases 10 and 11: a full disk during a run or a report, broken run files, a read-only results folder."""

import json
import os
import shutil
import subprocess

import pytest

from tests.bench.planted import copy_store, files, fill, mounted, run_planted, tiny_run_args
from tests.bench.runutil import bench_cmd


def _store_size(store):
    return sum(p.stat().st_size for p in store.rglob("*") if p.is_file())


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_full_disk_during_a_run_is_one_line_naming_the_path_and_free_space(finished_store, tiny_dataset, tmp_path):
    size_kb = _store_size(finished_store) // 1024 + 1024
    with mounted(tmp_path / "disk", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs") as disk:
        results = copy_store(finished_store, disk / "res")
        fill(disk, 40_000)  # room for config.json and env.json, not for a checkpoint
        args = tiny_run_args(tiny_dataset, results, "--set", "iterations=3")
        proc = run_planted(tmp_path, results, args, 3, ["no space left", str(results), "free"])
        assert "intact" in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_full_disk_during_a_report_is_one_line_naming_the_path(finished_store, tmp_path):
    size_kb = _store_size(finished_store) // 1024 + 1024
    with mounted(tmp_path / "disk", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs") as disk:
        results = copy_store(finished_store, disk / "res")
        fill(disk, 64_000)  # room for SQLite's shared-memory file, not for the figures
        args = ["report", "--results", str(results)]
        run_planted(tmp_path, results, args, 3, ["no space left", str(results), "free"])


def _two_runs(finished_store, tmp_path):
    """The finished store plus a copy of its run recorded as seed 1."""
    results = copy_store(finished_store, tmp_path / "res")
    (first,) = (results / "runs").iterdir()
    second = first.with_name(first.name.replace("__s0__", "__s1__"))
    shutil.copytree(first, second)
    summary = json.loads((second / "summary.json").read_text())
    (second / "summary.json").write_text(json.dumps({**summary, "run_id": second.name, "seed": 1}))
    return results, first, second


@pytest.mark.parametrize("broken", ["summary.json", "per_case.csv"])
def test_report_leaves_out_a_run_with_a_broken_file_and_names_it(finished_store, tmp_path, broken):
    results, first, second = _two_runs(finished_store, tmp_path)
    text = (second / broken).read_text()
    (second / broken).write_text(text[: len(text) // 2] + ("\n1,2,3,4,5,6,7,8\n" if broken.endswith("csv") else ""))
    before = files(results)
    proc = subprocess.run(bench_cmd("report", "--results", str(results), "--out", str(tmp_path / "out")),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    (warning,) = [line for line in proc.stderr.splitlines() if line.startswith("warning: run")]
    assert second.name in warning and str(second / broken) in warning
    assert files(results) == before
    table = (tmp_path / "out" / "runs.csv").read_text()
    assert first.name in table and second.name not in table


@pytest.mark.skipif(os.geteuid() != 0, reason="a read-only bind mount needs root (as root, chmod does not stop writes)")
def test_read_only_results_folder_is_readable_by_report_and_check(finished_store, tmp_path):
    source = copy_store(finished_store, tmp_path / "src")
    baseline = tmp_path / "baseline.json"
    proc = subprocess.run(bench_cmd("check", "--results", str(source), "--baseline", str(baseline), "--update"),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    with mounted(tmp_path / "ro", "--bind", str(source)):
        subprocess.run(["mount", "-o", "remount,ro,bind", str(tmp_path / "ro")], check=True)
        results = tmp_path / "ro"
        report = subprocess.run(bench_cmd("report", "--results", str(results), "--out", str(tmp_path / "out")),
                                capture_output=True, text=True, timeout=600)  # fmt: skip
        assert report.returncode == 0, report.stderr[-3000:]
        assert (tmp_path / "out" / "report.md").is_file()
        check = subprocess.run(bench_cmd("check", "--results", str(results), "--baseline", str(baseline)),
                               capture_output=True, text=True, timeout=600)  # fmt: skip
        assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
        run_planted(tmp_path, results, ["report", "--results", str(results)], 2, [str(results / "report"), "--out"])
