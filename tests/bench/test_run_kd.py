"""The KD grid of `bench run`: the teacher once, then none / each KD method per student."""

import subprocess

import torch

import models
from bench.store import ResultsStore
from tests.bench.runutil import TINY_RUN, bench_cmd


def _grid(data, results, *extra):
    args = bench_cmd("run", "--data", str(data), "--results", str(results), *TINY_RUN, "--set", "iterations=2",
                     "--set", "val_every=2", *extra)  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, timeout=900)


def test_kd_grid_trains_teacher_once_and_records_it_in_each_kd_run(tiny_dataset, tmp_path):
    proc = _grid(tiny_dataset, tmp_path / "res", "--models", "lcovnet", "--kd", "ca,ms+ca")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {(s["model"], s["kd"]): s for s in ResultsStore(tmp_path / "res").summaries()}
    assert set(runs) == {("unet3d", "none"), ("lcovnet", "none"), ("lcovnet", "ca"), ("lcovnet", "ms+ca")}
    teacher_id = runs[("unet3d", "none")]["run_id"]
    for kd in ("ca", "ms+ca"):
        assert runs[("lcovnet", kd)]["teacher"] == "unet3d"
        assert runs[("lcovnet", kd)]["teacher_run"] == teacher_id
        assert runs[("lcovnet", kd)]["kd_hparams"]
    assert runs[("lcovnet", "none")]["teacher"] is None
    assert proc.stderr.count("] unet3d (teacher), seed 0\n") == 1
    assert "[3/4] lcovnet + ca from unet3d, seed 0" in proc.stderr
    assert (tmp_path / "res" / "runs" / teacher_id / "weights.pt").is_file()


def test_teacher_checkpoint_with_other_class_count_is_a_clear_error(tiny_dataset, tmp_path):
    path = tmp_path / "teacher.pt"
    torch.save(models.create_model("unet3d", 1, 3, base_channels=4).state_dict(), path)
    proc = _grid(tiny_dataset, tmp_path / "res", "--models", "lcovnet", "--kd", "kd", "--teacher-checkpoint", str(path))
    assert proc.returncode == 2
    assert "does not fit unet3d" in proc.stderr and "Traceback" not in proc.stderr
