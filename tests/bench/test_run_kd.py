"""The KD grid of `bench run`: the teacher once, then none / each KD method per student."""

import json
import subprocess
from pathlib import Path

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
    runs = {(s.model, s.kd): s for s in ResultsStore(tmp_path / "res").summaries()}
    assert set(runs) == {("unet3d", "none"), ("lcovnet", "none"), ("lcovnet", "ca"), ("lcovnet", "ms+ca")}
    teacher_id = runs[("unet3d", "none")].run_id
    for kd in ("ca", "ms+ca"):
        assert runs[("lcovnet", kd)].teacher == "unet3d"
        assert runs[("lcovnet", kd)].teacher_run == teacher_id
        assert runs[("lcovnet", kd)].kd_hparams
    assert runs[("lcovnet", "none")].teacher is None
    assert proc.stderr.count("] unet3d (teacher), seed 0\n") == 1
    assert "[3/4] lcovnet + ca from unet3d, seed 0" in proc.stderr
    assert (tmp_path / "res" / "runs" / teacher_id / "weights.pt").is_file()


def test_two_teachers_with_their_own_iterations_each_teach_their_own_kd_run(tiny_dataset, tmp_path):
    proc = _grid(tiny_dataset, tmp_path / "res", "--models", "lcovnet", "--kd", "ca",
                 "--teacher", "unet3d,lcovnet:base_channels=8", "--set", "teacher.iterations=3")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {(s.model, s.kd, s.teacher): s for s in ResultsStore(tmp_path / "res").summaries()}
    teachers = {s.model: s for s in runs.values() if s.preset == "smoke-teacher"}
    assert set(teachers) == {"unet3d", "lcovnet:base_channels=8"}
    assert all(t.iterations == 3 and t.preset_hash != runs[("lcovnet", "none", None)].preset_hash
               for t in teachers.values())  # fmt: skip
    assert runs[("lcovnet", "none", None)].iterations == 2 and runs[("lcovnet", "none", None)].preset == "smoke"
    for name, teacher in teachers.items():
        kd = runs[("lcovnet", "ca", name)]
        assert kd.teacher_run == teacher.run_id and kd.iterations == 2 and kd.preset == "smoke"
    assert len(runs) == 5


def test_teacher_protocol_changing_the_data_is_refused_in_one_line(tiny_dataset, tmp_path):
    proc = _grid(tiny_dataset, tmp_path / "res", "--models", "lcovnet", "--kd", "ca", "--set", "teacher.crop=false")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "the teacher's crop (False) must equal the students' (True)" in proc.stderr
    assert not (tmp_path / "res").exists()


def test_teacher_checkpoint_with_other_class_count_is_a_clear_error(tiny_dataset, tmp_path):
    path = tmp_path / "teacher.pt"
    torch.save(models.create_model("unet3d", 1, 3, base_channels=4).state_dict(), path)
    proc = _grid(tiny_dataset, tmp_path / "res", "--models", "lcovnet", "--kd", "kd", "--teacher-checkpoint", str(path))
    assert proc.returncode == 2
    assert "does not fit unet3d" in proc.stderr and "Traceback" not in proc.stderr


def test_kd_arguments_and_sweeps_become_separate_runs_recorded_with_their_values(tiny_dataset, tmp_path):
    proc = _grid(tiny_dataset, tmp_path / "res", "--models", "lcovnet", "--kd", "ca,ca:weight=0.5|1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {(s.model, s.kd): s for s in ResultsStore(tmp_path / "res").summaries()}
    assert set(runs) == {
        ("unet3d", "none"), ("lcovnet", "none"), ("lcovnet", "ca"),
        ("lcovnet", "ca:weight=0.5"), ("lcovnet", "ca:weight=1.0"),
    }  # fmt: skip
    assert runs[("lcovnet", "ca:weight=0.5")].kd_kwargs == {"weight": 0.5}
    assert runs[("lcovnet", "ca:weight=0.5")].kd_hparams["weight"] == 0.5
    assert runs[("lcovnet", "ca:weight=1.0")].kd_hparams["weight"] == 1.0
    assert runs[("lcovnet", "ca")].kd_kwargs == {} and runs[("lcovnet", "ca")].fold == 0
    # Runs without arguments keep the run ids of earlier versions; runs with them get their arguments' hash.
    assert runs[("lcovnet", "ca")].run_id.endswith(f"__s0__{runs[('lcovnet', 'none')].preset_hash}")
    assert "__a-" in runs[("lcovnet", "ca:weight=0.5")].run_id
    assert "[4/5] lcovnet + ca:weight=0.5 from unet3d, seed 0" in proc.stderr


def test_unknown_kd_argument_exits_2_naming_the_key_and_the_valid_ones(tiny_dataset, tmp_path):
    proc = _grid(tiny_dataset, tmp_path / "res", "--models", "lcovnet", "--kd", "ca:wieght=0.5")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "'wieght' is not an argument; did you mean 'weight'?" in proc.stderr and "weight=None" in proc.stderr
    assert not (tmp_path / "res").exists()


TINY_EXPERIMENT = """
description = "tiny CA-KD weight sweep"
preset = "smoke"
seeds = [0]
models = ["lcovnet"]
kd = ["ca:weight=0.5|1"]

[overrides]
spacing = "keep"
patch = [32, 32, 32]
base_channels = 4
batch_size = 1
profile_runs = 1
profile_warmup = 0
val_cases = 1
iterations = 2
val_every = 2
"""


def _experiment(data, results, path):
    args = bench_cmd("run", "--experiment", str(path), "--data", str(data), "--results", str(results),
                     "--device", "cpu", "--whole-volume", "32,48,48")  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, timeout=900)


def test_experiment_file_runs_its_grid_and_its_saved_resolved_form_reruns_the_same_run_ids(tiny_dataset, tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(TINY_EXPERIMENT)
    proc = _experiment(tiny_dataset, tmp_path / "res", path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = {s.run_id for s in ResultsStore(tmp_path / "res").summaries()}
    kds = {s.kd for s in ResultsStore(tmp_path / "res").summaries()}
    assert kds == {"none", "ca:weight=0.5", "ca:weight=1.0"} and len(first) == 4  # with the teacher
    saved = tmp_path / "res" / "experiments" / "sweep.toml"
    assert saved.is_file()
    again = _experiment(tiny_dataset, tmp_path / "res", saved)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("complete, skipped") == 4
    assert {s.run_id for s in ResultsStore(tmp_path / "res").summaries()} == first


def test_experiment_with_grid_flags_or_a_fold_beyond_the_presets_is_refused_in_one_line(tiny_dataset, tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(TINY_EXPERIMENT)
    args = bench_cmd("run", "--experiment", str(path), "--models", "lcovnet", "--results", str(tmp_path / "r2"))
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "holds the grid; drop --models" in proc.stderr
    args = bench_cmd("run", "--experiment", str(path), "--data", str(tmp_path / "absent"), "--results", str(tmp_path))
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and f"--data {tmp_path / 'absent'} does not exist" in proc.stderr
    path.write_text(TINY_EXPERIMENT.replace("seeds = [0]", "seeds = [0]\nfolds = [0, 5]"))
    proc = _experiment(tiny_dataset, tmp_path / "r3", path)
    assert proc.returncode == 2 and "folds must be below the preset's folds = 5, got [0, 5]" in proc.stderr
    path.write_text(TINY_EXPERIMENT + '\n[teacher]\nmodels = ["unet3d"]\n[teacher.overrides]\nval_cases = 2\n')
    proc = _experiment(tiny_dataset, tmp_path / "r3", path)
    assert proc.returncode == 2 and "[teacher]: the teacher's val_cases (2) must equal the students' (1)" in proc.stderr
    assert not (tmp_path / "r3").exists() and "Traceback" not in proc.stderr


def test_folds_train_one_run_per_fold_on_that_folds_split_and_record_it(tiny_dataset, tmp_path):
    proc = _grid(tiny_dataset, tmp_path / "res", "--models", "lcovnet", "--folds", "0,1", "--set", "folds=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {s.fold: s for s in ResultsStore(tmp_path / "res").summaries()}
    assert set(runs) == {0, 1} and runs[1].run_id == runs[0].run_id + "__f1"
    splits = json.loads(next((tmp_path / "res" / "splits").glob("*.json")).read_text())["folds"]
    for fold, summary in runs.items():
        assert summary.n_train == len(splits[fold]["train"]) and summary.n_test == len(splits[fold]["test"])
    assert "lcovnet, seed 0, fold 1" in proc.stderr
    bad = _grid(tiny_dataset, tmp_path / "res2", "--models", "lcovnet", "--folds", "0,5")
    assert bad.returncode == 2 and "--folds must be between 0 and 4 (the preset's folds = 5), got '0,5'" in bad.stderr


def test_the_six_acf_benchmark_methods_run_as_a_grid_and_record_their_settings(tiny_dataset, tmp_path):
    methods = ["dkd", "nkd", "cirkd", "reviewkd", "ft", "acf"]
    proc = _grid(tiny_dataset, tmp_path / "res", "--models", "lcovnet", "--kd", ",".join(methods))
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {s.kd: s for s in ResultsStore(tmp_path / "res").summaries() if s.model == "lcovnet"}
    assert set(runs) == {"none", *methods}
    for kd in methods:
        assert runs[kd].teacher == "unet3d" and runs[kd].first_step["kd_loss"] > 0
    assert runs["dkd"].kd_hparams["beta"] == 8.0 and runs["cirkd"].kd_hparams["pixel_memory_size"] == 20000
    assert runs["ft"].kd_hparams["paraphraser_iterations"] == 250 and runs["acf"].kd_hparams["at_weight"] == 25000.0


def test_the_acf_table_experiments_plan_every_method_with_the_segresnet_teacher(tiny_dataset, tmp_path):
    for name in ("acf_bckd_table.toml", "acf_bckd_table_cpu.toml"):
        path = Path(__file__).resolve().parents[2] / "experiments" / name
        args = bench_cmd("run", "--experiment", str(path), "--data", str(tiny_dataset), "--results",
                         str(tmp_path / name), "--device", "cpu", "--dry-run")  # fmt: skip
        proc = subprocess.run(args, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        plan = proc.stdout + proc.stderr
        assert "monai-segresnet" in plan and "acf:epoch_iterations=" in plan and "cirkd" in plan
