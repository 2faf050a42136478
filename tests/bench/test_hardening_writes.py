"""Issue 26, part 1: every file goes through one writer (``bench.atomic``) that verifies what it wrote, tells a full
disk from the errno or the free space, and never writes through a symbolic link inside a results folder."""

import hashlib
import json
import os
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch

from bench.atomic import atomic_path, atomic_save_array, atomic_write_bytes, protect
from bench.data.nifti import make_image, scan_nifti, write_image
from bench.errors import BenchError, DiskFullError
from bench.training.checkpoint import save_checkpoint
from tests.bench.planted import copy_store, files, fill, mounted, run_id_for, run_planted, tiny_run_args
from tests.bench.runutil import bench_cmd

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs."""
    with mounted(tmp_path / "disk", "-t", "tmpfs", "-o", "size=2m", "tmpfs") as disk:
        yield disk


def assert_intact(folder):
    """No temporary file left, and no empty or cut-off file under a final name below ``folder``; the run lock
    (empty whenever nobody holds the run) and the test's filler excepted."""
    for path in sorted(folder.rglob("*")):
        if path.is_dir() or path.name in (".lock", "filler"):
            continue
        assert ".tmp" not in path.name, f"temporary file left: {path}"
        assert path.stat().st_size > 0, f"empty file under its final name: {path}"
        name = path.name
        if name.endswith(".json"):
            json.loads(path.read_text())
        elif name.endswith(".csv"):
            pd.read_csv(path)
        elif name.endswith(".npy"):
            np.load(path, mmap_mode="r")
        elif name.endswith(".pt"):
            torch.load(path, weights_only=True)
        elif name.endswith(".nii.gz"):
            scan_nifti(path)
            sitk.ReadImage(str(path))


def _noise_image(side: int):
    return make_image(np.random.default_rng(0).normal(size=(side, side, side)).astype(np.float32), (1.0, 1.0, 1.0))


# -- the writer, in this process --------------------------------------------------------------------------------------
@ROOT_ONLY
def test_an_image_simpleitk_writes_short_on_a_full_disk_is_a_disk_full_error_and_the_old_file_stays(small_disk):
    target = small_disk / "mask.nii.gz"
    write_image(_noise_image(8), target)
    before = target.read_bytes()
    fill(small_disk, 20_000)
    with pytest.raises(DiskFullError, match=r"mask\.nii\.gz"):
        write_image(_noise_image(64), target)  # 1 MB of noise: no compression makes it fit
    assert target.read_bytes() == before
    assert_intact(small_disk)


@ROOT_ONLY
def test_a_checkpoint_torch_cannot_finish_on_a_full_disk_is_a_disk_full_error(small_disk):
    target = small_disk / "checkpoint_last.pt"
    save_checkpoint(target, {"w": torch.zeros(10)})
    with pytest.raises(DiskFullError, match=r"checkpoint_last\.pt"):
        save_checkpoint(target, {"w": torch.randn(1_000_000)})  # 4 MB on a 2 MB disk
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.zeros(10))
    assert_intact(small_disk)


@ROOT_ONLY
def test_an_array_numpy_writes_short_is_a_disk_full_error(small_disk):
    with pytest.raises(DiskFullError, match=r"image\.npy"):
        atomic_save_array(small_disk / "image.npy", np.ones((700_000,), np.float32))
    assert not (small_disk / "image.npy").exists()
    assert_intact(small_disk)


@ROOT_ONLY
def test_bytes_that_cannot_fit_are_refused_before_anything_is_written(small_disk):
    fill(small_disk, 100_000)
    with pytest.raises(DiskFullError, match="free"):
        atomic_write_bytes(small_disk / "big.json", b"x" * 200_000)
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_a_file_a_library_wrote_that_does_not_read_back_never_replaces_the_old_one(tmp_path):
    from bench.training.checkpoint import zip_intact

    target = tmp_path / "weights.pt"
    target.write_bytes(b"old")
    with pytest.raises(BenchError, match="does not read back"), atomic_path(target, verify=zip_intact) as tmp:
        tmp.write_bytes(b"PK\x03\x04 cut off")
    with pytest.raises(BenchError, match="0 bytes"), atomic_path(tmp_path / "figure.png") as tmp:
        tmp.touch()  # a library that "wrote" nothing
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.pt"]


def test_a_link_among_the_folders_below_a_protected_one_is_never_written_through(tmp_path):
    root, elsewhere = tmp_path / "results", tmp_path / "elsewhere"
    elsewhere.mkdir()
    root.mkdir()
    (root / "report").symlink_to(elsewhere)
    protect(root)
    with pytest.raises(BenchError, match="symbolic link"):
        atomic_write_bytes(root / "report" / "report.md", b"# report")
    assert list(elsewhere.iterdir()) == []
    (root / "runs").mkdir()
    (root / "runs" / "summary.json").symlink_to(elsewhere / "mine.json")
    atomic_write_bytes(root / "runs" / "summary.json", b"{}")  # the link itself is replaced, never followed
    assert not (root / "runs" / "summary.json").is_symlink() and list(elsewhere.iterdir()) == []


# -- the commands on a full disk --------------------------------------------------------------------------------------
@ROOT_ONLY
def test_predict_on_a_full_disk_exits_3_and_leaves_no_empty_mask(finished_store, tiny_dataset, tmp_path):
    (run_id,) = [p.name for p in (finished_store / "runs").iterdir()]
    with mounted(tmp_path / "disk", "-t", "tmpfs", "-o", "size=2m", "tmpfs") as disk:
        fill(disk, 3000)
        args = ["predict", "--run", run_id, "--results", str(finished_store), "--input",
                str(tiny_dataset / "imagesTs"), "--output", str(disk / "masks")]  # fmt: skip
        run_planted(tmp_path, finished_store, args, 3, ["no space left", "case_0005.nii.gz", "free"])
        assert list((disk / "masks").iterdir()) == []
        assert_intact(disk)


@ROOT_ONLY
@pytest.mark.parametrize("size_mb", [1, 2, 3, 4])
def test_run_on_a_full_disk_ends_in_one_line_at_every_size(tiny_dataset, tmp_path, size_mb):
    """1-2 MB fill up while caching the preprocessed cases (numpy), 3-4 MB while writing a checkpoint (torch)."""
    with mounted(tmp_path / "disk", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs") as disk:
        results = disk / "results"
        outside = files(tmp_path, skip=results)
        proc = subprocess.run(bench_cmd(*tiny_run_args(tiny_dataset, results)), capture_output=True, text=True,
                              timeout=600)  # fmt: skip
        assert proc.returncode == 3, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
        (error,) = [line for line in proc.stderr.splitlines() if ": error: " in line]
        assert "no space left" in error and str(results) in error and "MiB free" in error
        assert files(tmp_path, skip=results) == outside
        assert_intact(disk)


# -- links inside a results folder ------------------------------------------------------------------------------------
def _precious(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("the user's own file\n")
    return target


def test_a_lock_that_is_a_link_is_refused_and_its_target_kept(finished_store, tiny_dataset, tmp_path):
    results = copy_store(finished_store, tmp_path / "res")
    (run,) = (results / "runs").iterdir()
    target = _precious(tmp_path)
    (run / ".lock").unlink(missing_ok=True)
    (run / ".lock").symlink_to(target)
    run_planted(tmp_path, results, tiny_run_args(tiny_dataset, results), 2, [".lock", "symbolic link"])
    assert target.read_text() == "the user's own file\n"


def test_a_job_log_that_is_a_link_is_not_written_through(finished_store, tiny_dataset, tmp_path):
    results = copy_store(finished_store, tmp_path / "res")
    run_id = run_id_for(tiny_dataset, "--set", "iterations=3")
    target = _precious(tmp_path)
    (results / "jobs" / run_id).mkdir(parents=True)
    (results / "jobs" / run_id / "log.txt").symlink_to(target)
    args = tiny_run_args(tiny_dataset, results, "--executor", "local", "--jobs", "1", iterations=3)
    proc = subprocess.run(bench_cmd(*args), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "log.txt is a symbolic link" in proc.stderr and "Traceback" not in proc.stderr
    assert target.read_text() == "the user's own file\n"


def test_a_report_folder_that_is_a_link_is_refused(finished_store, tmp_path):
    results = copy_store(finished_store, tmp_path / "res")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (results / "report").symlink_to(elsewhere)
    run_planted(tmp_path, results, ["report", "--results", str(results)], 2, [str(results / "report"), "link"])
    assert list(elsewhere.iterdir()) == []


def test_an_index_that_is_a_link_is_refused(finished_store, tmp_path):
    results = copy_store(finished_store, tmp_path / "res")
    elsewhere = tmp_path / "elsewhere.sqlite"
    shutil.move(results / "bench.sqlite", elsewhere)
    (results / "bench.sqlite").symlink_to(elsewhere)
    before = hashlib.sha1(elsewhere.read_bytes()).hexdigest()
    run_planted(tmp_path, results, ["report", "--results", str(results)], 2, ["bench.sqlite", "symbolic link"])
    assert hashlib.sha1(elsewhere.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("command", ["predict", "export"])
@pytest.mark.parametrize("where", ["climbs", "linked"])
def test_a_run_named_outside_the_results_folder_is_refused(finished_store, tiny_dataset, tmp_path, command, where):
    results = copy_store(finished_store, tmp_path / "res")
    (run,) = (results / "runs").iterdir()
    outside = shutil.copytree(run, tmp_path / "elsewhere" / run.name)
    if where == "linked":
        (results / "runs" / "linked").symlink_to(outside)
        run_id, names = "linked", ["runs/linked", "symbolic link"]
    else:
        run_id, names = f"../../elsewhere/{run.name}", ["run id", "../../elsewhere"]
    args = ["--run", run_id, "--results", str(results)]
    if command == "predict":
        args += ["--input", str(tiny_dataset / "imagesTs"), "--output", str(tmp_path / "masks")]
    run_planted(tmp_path, results, [command, *args], 2, names)
