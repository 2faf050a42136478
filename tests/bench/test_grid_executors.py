"""Issue 15: the grid through `--executor local` and `--executor slurm` (a real single-node SLURM cluster, started by
.ci/slurm-up) stores the numbers of the inline grid; the SLURM jobs respect the teacher dependency, a cancelled job
is completed by the same `bench run`, a failing cell shows as failed in `bench status`; two `bench run` on one
store never train a cell twice."""

import json
import os
import shutil
import subprocess
import time

import pytest

from bench.executors.jobs import read_job, slurm_queue
from bench.store import ResultsStore
from tests.bench.planted import run_id_for, tiny_run_args
from tests.bench.runutil import TINY_RUN, bench_cmd

# One xdist worker runs them all, one after another: they share the 2-CPU test cluster and time its jobs.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("executors")]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same thread count, hence the same rounding, everywhere
DETERMINISTIC = [
    "run_id",
    "model",
    "kd",
    "teacher",
    "teacher_run",
    "seed",
    "params",
    "gmacs",
    "dice_mean",
    "hd95_mean",
    "iterations",
    "best_val_dice",
    "first_step",
    "kd_hparams",
    "n_train",
    "n_test",
]


def _cluster_missing() -> str | None:
    try:
        import submitit  # noqa: F401
    except ImportError:
        return "submitit is not installed (pip install 'segkd-bench[slurm]')"
    if shutil.which("sbatch") is None:
        return "SLURM's sbatch is not on PATH (run .ci/slurm-up as root)"
    try:
        nodes = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        nodes = []
    if not any(n.rstrip("*") in ("idle", "mix", "alloc") for n in nodes):
        return "no SLURM node is up (sinfo shows none idle; run .ci/slurm-up as root)"
    return None


needs_slurm = pytest.mark.skipif(_cluster_missing() is not None, reason=str(_cluster_missing()))


def _grid(data, results, *extra, iterations=2, timeout=900):
    args = bench_cmd("run", "--models", "lcovnet", "--kd", "ca,ms", "--data", str(data), "--results", str(results),
                     *TINY_RUN, "--set", f"iterations={iterations}", "--set", "val_every=2", *extra)  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=ENV)


@pytest.fixture(scope="module")
def inline_grid(tiny_dataset, tmp_path_factory):
    """The tiny grid (teacher, lcovnet without KD, with ca and with ms) trained by the default inline executor."""
    results = tmp_path_factory.mktemp("inline") / "res"
    proc = _grid(tiny_dataset, results)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return results


def assert_same_numbers(a, b):
    """The same runs in stores ``a`` and ``b`` with the same metrics, training curves and weights."""
    import pandas as pd
    import torch

    sa, sb = ResultsStore(a).summaries(), ResultsStore(b).summaries()
    assert [s.run_id for s in sa] == [s.run_id for s in sb] and sa
    for x, y in zip(sa, sb):
        assert {k: getattr(x, k) for k in DETERMINISTIC} == {k: getattr(y, k) for k in DETERMINISTIC}
        run = x.run_id
        logs = [pd.read_csv(root / "runs" / run / "train_log.csv").drop(columns="seconds") for root in (a, b)]
        pd.testing.assert_frame_equal(*logs)
        wa, wb = (torch.load(root / "runs" / run / "weights.pt", weights_only=True)["model"] for root in (a, b))
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    pd.testing.assert_frame_equal(ResultsStore(a).per_case(), ResultsStore(b).per_case())


def _status(results):
    return subprocess.run(bench_cmd("status", "--results", str(results)), capture_output=True, text=True, env=ENV)


def test_local_executor_with_two_workers_stores_the_numbers_of_the_inline_grid(tiny_dataset, inline_grid, tmp_path):
    proc = _grid(tiny_dataset, tmp_path / "res", "--executor", "local", "--jobs", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_numbers(inline_grid, tmp_path / "res")
    assert "4 cell(s): 4 complete" in proc.stdout


def test_two_bench_runs_on_one_store_train_each_cell_once(tiny_dataset, tmp_path):
    args = bench_cmd("run", "--models", "lcovnet", "--kd", "ca", "--data", str(tiny_dataset), "--results",
                     str(tmp_path / "res"), *TINY_RUN, "--set", "iterations=2", "--set", "val_every=2",
                     "--executor", "local", "--jobs", "2")  # fmt: skip
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
             for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    runs = sorted((tmp_path / "res" / "runs").iterdir())
    assert len(runs) == 3
    for run in runs:  # both dispatchers' workers write to the cell's log; one trained it, the other found it done
        log = (tmp_path / "res" / "jobs" / run.name / "log.txt").read_text()
        assert log.count("done in ") == 1, log[-2000:]


@needs_slurm
def test_slurm_grid_runs_kd_jobs_after_the_teacher_and_stores_the_inline_numbers(tiny_dataset, inline_grid, tmp_path):
    results = tmp_path / "res"
    proc = _grid(tiny_dataset, results, "--executor", "slurm", "--wait")
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    assert_same_numbers(inline_grid, results)
    summaries = {(s.model, s.kd): s for s in ResultsStore(results).summaries()}
    teacher = summaries[("unet3d", "none")].run_id
    teacher_done = (results / "runs" / teacher / "summary.json").stat().st_mtime
    jobs = {s.run_id: read_job(results, s.run_id)["job_id"] for s in summaries.values()}
    assert len(set(jobs.values())) == 4 and all(jobs.values())
    for kd in ("ca", "ms"):
        run = summaries[("lcovnet", kd)].run_id
        assert (results / "runs" / run / "config.json").stat().st_mtime >= teacher_done  # started after the teacher
        sbatch = next((results / "jobs" / run).glob("*_submission.sh")).read_text()
        assert f"--dependency=afterok:{jobs[teacher]}" in sbatch
    status = _status(results)
    assert status.returncode == 0 and "4 cell(s): 4 complete" in status.stdout
    assert all(job in status.stdout for job in jobs.values())
    again = _grid(tiny_dataset, results, "--executor", "slurm")
    assert again.returncode == 0 and "0 job(s) queued, 4 cell(s) complete already" in again.stdout


def _wait_gone(job_id, timeout=120):
    deadline = time.time() + timeout
    while job_id in slurm_queue() and time.time() < deadline:
        time.sleep(0.5)


def _submit_and_wait_for_a_checkpoint(dataset, results, env=ENV):
    """Submit a 150-iteration lcovnet cell as a SLURM job; returns the command, the run id and the job id once the
    job has written its first checkpoint (the job is still training then)."""
    args = bench_cmd(*tiny_run_args(dataset, results, "--executor", "slurm", iterations=150))
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id = run_id_for(dataset, "--set", "iterations=150")
    deadline = time.time() + 600
    while not (results / "runs" / run_id / "checkpoint_last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    return args, run_id, read_job(results, run_id)["job_id"]


@needs_slurm
def test_cancelled_slurm_job_is_completed_by_the_same_bench_run_from_its_checkpoint(tiny_dataset, tmp_path):
    results = tmp_path / "res"
    args, run_id, job = _submit_and_wait_for_a_checkpoint(tiny_dataset, results)
    subprocess.run(["scancel", job], check=True)
    _wait_gone(job)
    assert not (results / "runs" / run_id / "summary.json").exists()
    assert "interrupted" in _status(results).stdout

    again = subprocess.run([*args, "--wait"], capture_output=True, text=True, timeout=600, env=ENV)
    assert again.returncode == 0, again.stderr[-3000:] + again.stdout[-3000:]
    (summary,) = ResultsStore(results).summaries()
    assert summary.iterations == 150
    new_job = read_job(results, run_id)["job_id"]
    assert new_job != job
    log = next((results / "jobs" / run_id).glob(f"{new_job}_0_log.err")).read_text()
    assert "resuming lcovnet (seed 0) from iteration" in log


@needs_slurm
def test_preempted_slurm_job_requeues_itself_and_resumes_from_its_checkpoint(tiny_dataset, tmp_path):
    """SIGUSR2 is what SLURM sends a job it preempts or whose time is up. No --slurm-time: the job runs under the
    partition's limit (the test cluster's is unlimited), which submitit's signal handler must know too. No
    OMP_NUM_THREADS either: the job trains and profiles on the one CPU SLURM gave it, not on every core of the node."""
    results = tmp_path / "res"
    env = {k: v for k, v in ENV.items() if k != "OMP_NUM_THREADS"}
    _, run_id, job = _submit_and_wait_for_a_checkpoint(tiny_dataset, results, env)
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    deadline = time.time() + 120
    while (state := slurm_queue().get(job, ("gone",))[0]) not in ("PENDING", "gone") and time.time() < deadline:
        time.sleep(0.2)
    logs = results / "jobs" / run_id
    assert state == "PENDING", f"job {job} was not requeued: {next(logs.glob('*_log.err')).read_text()[-2000:]}"
    # SLURM holds a requeued job back for a while (two minutes here); the test lets it start at once.
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
    _wait_gone(job, timeout=600)

    (summary,) = ResultsStore(results).summaries()
    assert summary.iterations == 150
    assert json.loads((results / "runs" / run_id / "env.json").read_text())["threads"] == 1  # --slurm-cpus' default
    assert summary.latency_threads == 1  # the spawned profiling process too
    out, err = ((logs / f"{job}_0_log.{kind}").read_text() for kind in ("out", "err"))
    assert "this job is preempted" in out and f"Requeued job {job}" in out
    assert "resuming lcovnet (seed 0) from iteration" in err


@needs_slurm
def test_failing_cell_shows_as_failed_in_bench_status_with_its_error(tiny_dataset, tmp_path):
    results = tmp_path / "res"
    run_id = run_id_for(tiny_dataset)
    run_dir = ResultsStore(results).run_dir(run_id)
    (run_dir / "checkpoint_last.pt").write_bytes(b"not a checkpoint")  # bad data planted for this cell
    proc = subprocess.run(bench_cmd(*tiny_run_args(tiny_dataset, results, "--executor", "slurm", "--wait")),
                          capture_output=True, text=True, timeout=600, env=ENV)  # fmt: skip
    assert proc.returncode == 1
    status = _status(results)
    assert status.returncode == 1
    row = next(line for line in status.stdout.splitlines() if f" {run_id} " in line)  # the table's row
    assert row.startswith("lcovnet, seed 0 ") and " failed " in row and read_job(results, run_id)["job_id"] in row
    assert f"{run_id} failed:" in status.stdout and "checkpoint_last.pt" in status.stdout.split("failed:")[1]
    assert json.loads((results / "jobs" / run_id / "job.json").read_text())["executor"] == "slurm"
