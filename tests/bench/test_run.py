"""`bench run` end to end on a tiny synthetic set: store contents, skip/--force, resume after a kill, bad input."""

import contextlib
import json
import os
import pathlib
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import SimpleITK as sitk
import torch

from bench.store import ResultsStore
from tests.bench.runutil import TINY_RUN, bench_cmd


def _run(data, results, *extra, iterations=4, timeout=600):
    args = bench_cmd("run", "--models", "lcovnet", "--data", str(data), "--results", str(results), *TINY_RUN,
                     "--set", f"iterations={iterations}", "--set", "val_every=2", *extra)  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def test_run_stores_summary_per_case_log_and_database(tiny_dataset, tmp_path):
    proc = _run(tiny_dataset, tmp_path / "res", "--save-predictions")
    assert proc.returncode == 0, proc.stderr[-2000:]
    store = ResultsStore(tmp_path / "res")
    (summary,) = store.summaries()
    assert summary.model == "lcovnet" and summary.kd == "none" and summary.teacher is None
    assert summary.iterations == 4 and summary.n_cases == 2
    assert 0 <= summary.dice_mean <= 1
    assert summary.params == sum(p.numel() for p in __import__("models").create_model(
        "lcovnet", 1, len(summary.per_organ) + 1, base_channels=4).parameters())  # fmt: skip
    assert summary.uncounted_ops == []
    assert summary.whole_volume == [32, 48, 48] and summary.whole_ct_seconds > 0
    run_dir = store.run_dir(summary.run_id)
    for name in ("config.json", "env.json", "train_log.csv", "per_case.csv", "weights.pt", "checkpoint_last.pt"):
        assert (run_dir / name).exists(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["iterations"] == 4 and config["preset"] == "smoke"
    log = store.train_log(summary.run_id)
    assert list(log["iteration"])[-1] == 4 and log["val_dice"].notna().sum() == 2
    per_case = store.per_case(summary.run_id)
    assert set(per_case["case"]) == {c for c in per_case["case"]} and len(set(per_case["case"])) == 2
    with sqlite3.connect(store.db_path) as db:
        assert db.execute("select count(*) from runs").fetchone()[0] == 1
        assert db.execute("pragma journal_mode").fetchone()[0] == "wal"

    predictions = sorted((run_dir / "predictions").glob("*.nii.gz"))
    assert len(predictions) == 2
    for path in predictions:
        pred = sitk.ReadImage(str(path))
        gt = sitk.ReadImage(str(tiny_dataset / "labelsTs" / path.name))
        assert pred.GetSize() == gt.GetSize()
        assert pred.GetSpacing() == pytest.approx(gt.GetSpacing())
        assert pred.GetOrigin() == pytest.approx(gt.GetOrigin())
        assert pred.GetDirection() == pytest.approx(gt.GetDirection())

    again = _run(tiny_dataset, tmp_path / "res")
    assert again.returncode == 0 and "skip" in again.stderr
    forced = _run(tiny_dataset, tmp_path / "res", "--force")
    assert forced.returncode == 0 and "skip" not in forced.stderr
    assert ResultsStore(tmp_path / "res").summaries()[0].created >= summary.created


@pytest.mark.slow
def test_organs_key_trains_and_scores_only_those_organs_with_their_dataset_values(tiny_dataset, tmp_path):
    proc = _run(tiny_dataset, tmp_path / "res", "--set", 'organs=["kidney_left","liver"]', "--save-predictions")
    assert proc.returncode == 0, proc.stderr[-2000:]
    store = ResultsStore(tmp_path / "res")
    (summary,) = store.summaries()
    assert set(summary.per_organ) == {"liver", "kidney_left"}
    assert set(store.per_case(summary.run_id)["label"]) == {1, 3}
    run_dir = store.run_dir(summary.run_id)
    spec = json.loads((run_dir / "preprocessing.json").read_text())
    assert spec["num_classes"] == 4 and spec["labels"] == {"0": "background", "1": "liver", "3": "kidney_left"}
    assert spec["preprocessing"]["keep_labels"] == [1, 3]
    for path in (run_dir / "predictions").glob("*.nii.gz"):
        assert set(sitk.GetArrayFromImage(sitk.ReadImage(str(path))).ravel().tolist()) <= {0, 1, 3}


@pytest.mark.slow
def test_smoke_organ_choice_for_the_builtin_set_leaves_another_data_set_all_of_its_organs(tiny_dataset, tmp_path):
    data = tmp_path / "other"
    shutil.copytree(tiny_dataset, data)
    meta = json.loads((data / "dataset.json").read_text())
    (data / "dataset.json").write_text(json.dumps({**meta, "name": "OtherAbdomen"}))
    proc = _run(data, tmp_path / "res", "--whole-volume", "none", iterations=1)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (summary,) = ResultsStore(tmp_path / "res").summaries()
    assert summary.dataset == "OtherAbdomen"
    assert set(summary.per_organ) == set(meta["labels"]) - {"background"}  # all ten, not smoke's five


def test_killed_run_resumes_to_the_same_weights_as_an_uninterrupted_one(tiny_dataset, tmp_path):
    whole = _run(tiny_dataset, tmp_path / "whole", iterations=6)
    assert whole.returncode == 0, whole.stderr[-2000:]

    args = bench_cmd("run", "--models", "lcovnet", "--data", str(tiny_dataset), "--results", str(tmp_path / "cut"),
                     *TINY_RUN, "--set", "iterations=6", "--set", "val_every=2")  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    runs = tmp_path / "cut" / "runs"
    deadline = time.time() + 300
    while time.time() < deadline and not list(runs.glob("*/checkpoint_last.pt")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (run_dir,) = runs.iterdir()
    assert not (run_dir / "summary.json").exists()
    assert torch.load(run_dir / "checkpoint_last.pt", weights_only=True)["iteration"] < 6

    resumed = _run(tiny_dataset, tmp_path / "cut", iterations=6)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    (a,) = ResultsStore(tmp_path / "whole").summaries()
    (b,) = ResultsStore(tmp_path / "cut").summaries()
    assert a.run_id == b.run_id and b.iterations == 6
    wa = torch.load(tmp_path / "whole" / "runs" / a.run_id / "weights.pt", weights_only=True)["model"]
    wb = torch.load(run_dir / "weights.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a.dice_mean == b.dice_mean
    with sqlite3.connect(tmp_path / "cut" / "bench.sqlite") as db:
        assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
        assert db.execute("select count(*) from runs").fetchone()[0] == 1


def _interrupt_when(
    args: list[str], pattern: str, timeout: float = 300, appears: pathlib.Path | None = None
) -> tuple[int, str]:
    """Run ``args`` in a new process group, send SIGINT to the whole group (as Ctrl-C in a terminal does) once
    ``pattern`` shows up on stderr (or, with ``appears``, once that path exists: progress bars reach a pipe only with
    the next newline, too late for a phase that lasts a fraction of a second), and return the exit code and the
    whole stderr."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: proc.stderr.read1(4096), b"")))
    reader.start()
    deadline = time.time() + timeout

    # errors="replace": a read can end inside one of tqdm's multi-byte bar characters
    def seen() -> bool:
        if appears is not None:
            return appears.exists()
        return re.search(pattern, b"".join(chunks).decode(errors="replace")) is not None

    while time.time() < deadline and proc.poll() is None and not seen():
        time.sleep(0.005)
    # What the process had done with SIGINT when it was sent (blocked, ignored, caught), for a failure's message.
    sent = "SIGINT not sent: the process had ended"
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            status = pathlib.Path(f"/proc/{proc.pid}/status").read_text().splitlines()
            masks = [line for line in status if line.startswith(("SigBlk", "SigIgn", "SigCgt"))]
            sent = "SIGINT sent; " + " ".join(masks)
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=300)  # generous: a niced test on a busy 2-core machine can wait long for a CPU
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    reader.join()
    return proc.returncode, b"".join(chunks).decode(errors="replace") + f"\n[test: {sent}]"


def test_ctrl_c_during_preprocessing_stops_every_process_without_a_traceback(tiny_dataset, tmp_path):
    args = bench_cmd("run", "--models", "lcovnet", "--data", str(tiny_dataset), "--results", str(tmp_path / "res"),
                     *TINY_RUN, "--set", "iterations=2", "--set", "val_every=2")  # fmt: skip
    returncode, stderr = _interrupt_when(args, "", appears=tmp_path / "res" / "cache")
    assert returncode == 130, stderr[-2000:]
    assert "bench run: interrupted" in stderr and "Traceback" not in stderr and "Error" not in stderr


@pytest.mark.slow
def test_ctrl_c_in_training_checkpoints_and_the_rerun_resumes_to_the_same_weights(tiny_dataset, tmp_path):
    whole = _run(tiny_dataset, tmp_path / "whole", "--set", "val_every=3", iterations=6)
    assert whole.returncode == 0, whole.stderr[-2000:]

    args = bench_cmd("run", "--models", "lcovnet", "--data", str(tiny_dataset), "--results", str(tmp_path / "cut"),
                     *TINY_RUN, "--set", "iterations=6", "--set", "val_every=3")  # fmt: skip
    returncode, stderr = _interrupt_when(args, r"\| [1-5]/6 ")
    assert returncode == 130, stderr[-2000:]
    assert "bench run: interrupted" in stderr and "Traceback" not in stderr
    (run_dir,) = (tmp_path / "cut" / "runs").iterdir()
    stopped = torch.load(run_dir / "checkpoint_last.pt", weights_only=False)["iteration"]
    assert 1 <= stopped < 6 and not (run_dir / "summary.json").exists()

    resumed = _run(tiny_dataset, tmp_path / "cut", "--set", "val_every=3", iterations=6)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming lcovnet (seed 0) from iteration {stopped}" in resumed.stderr
    (a,) = ResultsStore(tmp_path / "whole").summaries()
    (b,) = ResultsStore(tmp_path / "cut").summaries()
    wa = torch.load(tmp_path / "whole" / "runs" / a.run_id / "weights.pt", weights_only=False)["model"]
    wb = torch.load(run_dir / "weights.pt", weights_only=False)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    log_a, log_b = (
        ResultsStore(tmp_path / "whole").train_log(a.run_id),
        ResultsStore(tmp_path / "cut").train_log(b.run_id),
    )
    assert log_a.drop(columns="seconds").equals(log_b.drop(columns="seconds"))


def test_nan_loss_stops_naming_the_iteration_and_keeps_the_checkpoint(tiny_dataset, tmp_path):
    proc = _run(tiny_dataset, tmp_path / "res", "--set", "lr=1e30", "--set", "val_every=1", iterations=6)
    assert proc.returncode == 2
    assert "at iteration" in proc.stderr and "last good checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list((tmp_path / "res" / "runs").glob("*/checkpoint_last.pt"))
    assert ResultsStore(tmp_path / "res").summaries() == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "iteratons=3"], "unknown preset key 'iteratons'"),
        (["--kd", "nosuchkd"], "unknown KD method 'nosuchkd'"),
        (["--set", "patch=[40, 32, 32]"], "multiple of its stride"),
        (["--set", "model_kwargs={lcovnet={depth=3}}"], "model_kwargs.lcovnet: depth not an argument of lcovnet"),
        (["--teacher-checkpoint", "/nonexistent/t.pt", "--kd", "kd"], "does not exist"),
        (["--kd", "ca", "--teacher", "lcovnt"], "--teacher: unknown model 'lcovnt'"),
        (["--set", "patch=32,48,48"], "must be list (write patch=[32,48,48])"),
        (["--seeds", "0,x"], "--seeds takes comma-separated whole numbers"),
    ],
)
def test_bad_run_input_fails_before_writing_anything(tiny_dataset, tmp_path, extra, message):
    proc = _run(tiny_dataset, tmp_path / "res", *extra)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "res").exists()


def test_unknown_model_is_reported_without_importing_torch(tmp_path):
    code = (
        "import sys; from bench.cli import main; rc = main(['run', '--models', 'nope', '--results', "
        f"{str(tmp_path / 'res')!r}]); print(rc, 'torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.split() == ["2", "False"]
    assert "--models: unknown model 'nope'; registered models: " in proc.stderr
    assert not (tmp_path / "res").exists()


def test_unwritable_results_directory_is_an_error_before_training(tiny_dataset, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = _run(tiny_dataset, blocker / "results")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert str(blocker) in proc.stderr


def test_ddp_on_cpu_with_two_gloo_processes(tiny_dataset, tmp_path):
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29531",
            "-m", "bench", "run", "--models", "lcovnet", "--data", str(tiny_dataset), "--results",
            str(tmp_path / "res"), *TINY_RUN, "--set", "iterations=4", "--set", "val_every=2"]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (summary,) = ResultsStore(tmp_path / "res").summaries()
    assert summary.iterations == 4
