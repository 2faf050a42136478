"""Issue 11, cases 1 and 9: every checkpoint is loaded weights-only; bad checkpoints are one line naming the file."""

import shutil

import pytest
import torch

from tests.bench.planted import Evil, copy_store, run_id_for, run_planted, tiny_run_args


def _plant(path, kind, marker=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "evil":
        torch.save({"model": Evil(marker)}, path)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "truncated":
        torch.save({"model": {"w": torch.ones(1000)}, "iteration": 1}, path)
        path.write_bytes(path.read_bytes()[:600])
    elif kind == "list":
        torch.save([torch.ones(2)], path)


@pytest.mark.parametrize("kind", ["evil", "empty", "garbage", "truncated"])
def test_bad_checkpoint_last_of_an_unfinished_run_is_refused_naming_it_and_restart(
    finished_store, tiny_dataset, tmp_path, kind
):
    results = copy_store(finished_store, tmp_path / "res")
    checkpoint = results / "runs" / run_id_for(tiny_dataset, "--set", "iterations=3") / "checkpoint_last.pt"
    marker = tmp_path / "pwned"
    _plant(checkpoint, kind, marker)
    args = tiny_run_args(tiny_dataset, results, "--set", "iterations=3")
    proc = run_planted(tmp_path, results, args, 2, [str(checkpoint), "--restart"])
    assert not marker.exists()
    assert "weights_only" not in proc.stderr and "will likely succeed" not in proc.stderr


def test_malicious_cached_teacher_weights_are_refused_without_running_them(finished_store, tiny_dataset, tmp_path):
    results = copy_store(finished_store, tmp_path / "res")
    weights = results / "runs" / run_id_for(tiny_dataset) / "weights.pt"
    marker = tmp_path / "pwned"
    _plant(weights, "evil", marker)
    args = tiny_run_args(tiny_dataset, results, "--kd", "kd", "--teacher", "lcovnet")
    proc = run_planted(tmp_path, results, args, 2, [str(weights), "refused", "posix.system"])
    assert not marker.exists() and "weights_only" not in proc.stderr


def test_malicious_kd_init_student_weights_are_refused(finished_store, tiny_dataset, tmp_path):
    results = copy_store(finished_store, tmp_path / "res")
    finished = results / "runs" / run_id_for(tiny_dataset)
    teacher = tmp_path / "teacher.pt"
    shutil.copy(finished / "weights.pt", teacher)
    student = results / "runs" / run_id_for(tiny_dataset, "--set", 'kd_init="student"')
    shutil.copytree(finished, student)  # a complete no-KD student run for kd_init=student ...
    marker = tmp_path / "pwned"
    _plant(student / "weights.pt", "evil", marker)  # ... whose weights someone replaced
    args = tiny_run_args(tiny_dataset, results, "--kd", "kd", "--teacher", "lcovnet", "--kd-init", "student",
                         "--teacher-checkpoint", str(teacher))  # fmt: skip
    run_planted(tmp_path, results, args, 2, [str(student / "weights.pt"), "refused"])
    assert not marker.exists()


@pytest.mark.parametrize(
    ("kind", "words"), [("evil", "refused"), ("empty", "empty"), ("garbage", "refused"), ("list", "not model weights")]
)
def test_bad_teacher_checkpoint_is_one_line_naming_it(finished_store, tiny_dataset, tmp_path, kind, words):
    results = copy_store(finished_store, tmp_path / "res")
    teacher = tmp_path / "teacher.pt"
    marker = tmp_path / "pwned"
    _plant(teacher, kind, marker)
    args = tiny_run_args(tiny_dataset, results, "--kd", "kd", "--teacher-checkpoint", str(teacher))
    proc = run_planted(tmp_path, results, args, 2, ["--teacher-checkpoint", str(teacher), words])
    assert not marker.exists() and "will likely succeed" not in proc.stderr


def test_checkpoints_load_weights_only_and_keep_every_rng_state(tmp_path):
    import random

    import numpy as np

    from bench.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state

    np.random.seed(7)
    random.seed(7)
    torch.manual_seed(7)
    np.random.normal()  # leaves a cached Gaussian in NumPy's legacy state
    save_checkpoint(tmp_path / "c.pt", {"rng": rng_state()})
    expected = (np.random.rand(3), random.random(), torch.rand(2))
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    got = (np.random.rand(3), random.random(), torch.rand(2))
    assert np.array_equal(expected[0], got[0]) and expected[1] == got[1] and torch.equal(expected[2], got[2])
    torch.load(tmp_path / "c.pt", weights_only=True)
