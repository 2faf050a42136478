"""`bench run` end to end on a tiny synthetic set: store contents, skip/--force, resume after a kill, bad input."""

import contextlib
import fcntl
import json
import os
import pathlib
import pty
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
import time

import pytest
import SimpleITK as sitk
import torch

from bench.console import LINE_INTERVAL_S
from bench.interrupt import SIGINT_AT_ENV
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


def test_quiet_run_prints_nothing_but_the_result_table(tiny_dataset, tmp_path):
    args = bench_cmd("-q", "run", "--models", "lcovnet", "--data", str(tiny_dataset), "--results",
                     str(tmp_path / "res"), *TINY_RUN, "--set", "iterations=2", "--whole-volume", "none")  # fmt: skip
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)  # 2>&1
    assert proc.returncode == 0, proc.stdout[-2000:]
    header, _, row = proc.stdout.splitlines()
    assert header.split() == ["run", "status", "Dice", "HD95", "(mm)", "time"]
    assert row.startswith("lcovnet, seed 0  trained")


def test_run_log_in_a_file_is_plain_readable_lines_a_few_per_phase(tiny_dataset, tmp_path):
    args = bench_cmd("run", "--models", "lcovnet", "--data", str(tiny_dataset), "--results", str(tmp_path / "res"),
                     *TINY_RUN, "--set", "iterations=4", "--set", "val_every=2", "--whole-volume", "none")  # fmt: skip
    log = tmp_path / "log.txt"
    start = time.monotonic()
    with log.open("w") as stderr:
        proc = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=stderr, timeout=600)
    elapsed = time.monotonic() - start
    text = log.read_text()
    assert proc.returncode == 0, text[-2000:]
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert all(line.isprintable() for line in lines), text
    assert any(line.startswith("lcovnet (seed 0): 4/4 it, loss ") for line in lines), text
    # A closing line for each phase (intensity statistics, preprocessing, training, evaluation), the run's start and
    # end, the closing note; and at most one line per LINE_INTERVAL_S of a phase in between.
    assert len(lines) <= 7 + elapsed // LINE_INTERVAL_S, text


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


def _group_processes(pgid: int) -> list[str]:
    """The command lines of the live (not zombie) processes of process group ``pgid``."""
    found = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            state, _, group = stat.read_text().rpartition(")")[2].split()[:3]
            if int(group) == pgid and state != "Z":
                found.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    return found


def _interrupted(args: list[str], point: str, terminal: bool = True, timeout: float = 300) -> tuple[int, str]:
    """Run ``args`` in a new process group that sends itself SIGINT, as Ctrl-C in a terminal does, at the interrupt
    point ``point`` (``SEGKD_SIGINT_AT``, see ``bench.interrupt``), with stderr on a pseudo-terminal (progress as tqdm
    bars, as where a user presses Ctrl-C) or else a pipe (progress as plain lines). Returns the exit code and stderr
    once every process of the group has ended; one left behind fails the test (and is killed)."""
    env = {**os.environ, SIGINT_AT_ENV: point}
    if terminal:
        reader_fd, writer_fd = pty.openpty()
        fcntl.ioctl(writer_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    else:
        reader_fd, writer_fd = os.pipe()
    # A shell's background job starts with SIGINT ignored, and an ignored signal stays ignored through exec: handled
    # here while the command starts, it is reset to its default there and Python raises KeyboardInterrupt on it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=writer_fd, env=env, start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    os.close(writer_fd)
    chunks: list[bytes] = []

    def read() -> None:  # until every writer has closed (a pseudo-terminal then fails with EIO)
        with contextlib.suppress(OSError):
            while chunk := os.read(reader_fd, 4096):
                chunks.append(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        returncode = proc.wait(timeout=timeout)
        deadline = time.time() + 30  # the workers' SIGTERM and multiprocessing's resource tracker take a moment
        while _group_processes(proc.pid) and time.time() < deadline:
            time.sleep(0.05)
        left = _group_processes(proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        reader.join(timeout=30)
        os.close(reader_fd)
    stderr = b"".join(chunks).decode(errors="replace")  # errors="replace": a bar's block characters span reads
    assert not left, f"processes left after {point!r}: {left}\n{stderr[-2000:]}"
    return returncode, stderr


def _assert_clean_interrupt(returncode: int, stderr: str, command: str = "run") -> None:
    assert returncode == 130, stderr[-2000:]
    assert f"bench {command}: interrupted" in stderr, stderr[-2000:]
    for text in ("Traceback", "Exception ignored", "Error"):
        assert text not in stderr, stderr[-2000:]


# Where a Ctrl-C during preprocessing lands (bench.console.Progress, bench.interrupt.worker_pool): before, inside and
# after the bar's construction, while the workers start, between two cases, during the pool's shutdown, and while the
# bar is closed. An interrupt inside the construction of a tqdm bar once left a half-built object whose __del__
# printed "Exception ignored in: <function tqdm.__del__>" with a traceback (issue 30).
PREPROCESSING_POINTS = ["before bar", "inside bar", "after bar", "pool start", "step 1", "pool shutdown", "closing bar"]


@pytest.mark.parametrize("stream", ["terminal", "terminal again", "log"])
@pytest.mark.parametrize("point", PREPROCESSING_POINTS)
def test_ctrl_c_during_preprocessing_stops_every_process_without_a_traceback(tiny_dataset, tmp_path, point, stream):
    """Through `bench data prepare`: the preprocessing of `bench run` (bench.data.preprocess) without the seconds of
    imports and checks `bench run` spends before it, so that each point runs more than once (twice at a terminal,
    where progress is a tqdm bar, and once into a log)."""
    args = bench_cmd("data", "prepare", "--data", str(tiny_dataset), "--out", str(tmp_path / "cache"),
                     "--normalization", "zscore", "--workers", "2")  # fmt: skip
    returncode, stderr = _interrupted(args, f"preprocessing: {point}", terminal=stream != "log")
    _assert_clean_interrupt(returncode, stderr, command="data")


def test_ctrl_c_while_bench_run_preprocesses_stops_every_process_without_a_traceback(tiny_dataset, tmp_path):
    args = bench_cmd("run", "--models", "lcovnet", "--data", str(tiny_dataset), "--results", str(tmp_path / "res"),
                     *TINY_RUN, "--set", "iterations=2", "--set", "val_every=2")  # fmt: skip
    _assert_clean_interrupt(*_interrupted(args, "preprocessing: step 1"))


@pytest.mark.slow
def test_ctrl_c_in_training_checkpoints_and_the_rerun_resumes_to_the_same_weights(tiny_dataset, tmp_path):
    whole = _run(tiny_dataset, tmp_path / "whole", "--set", "val_every=3", "--whole-volume", "none", iterations=6)
    assert whole.returncode == 0, whole.stderr[-2000:]

    args = bench_cmd("run", "--models", "lcovnet", "--data", str(tiny_dataset), "--results", str(tmp_path / "cut"),
                     *TINY_RUN, "--set", "iterations=6", "--set", "val_every=3", "--whole-volume", "none")  # fmt: skip
    # Ctrl-C during iteration 4: the step finishes, the checkpoint holds iteration 4 (mid-segment).
    _assert_clean_interrupt(*_interrupted(args, "lcovnet (seed 0): step 4"))
    (run_dir,) = (tmp_path / "cut" / "runs").iterdir()
    assert torch.load(run_dir / "checkpoint_last.pt", weights_only=False)["iteration"] == 4
    assert not (run_dir / "summary.json").exists()

    resumed = _run(tiny_dataset, tmp_path / "cut", "--set", "val_every=3", "--whole-volume", "none", iterations=6)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming lcovnet (seed 0) from iteration 4" in resumed.stderr
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
