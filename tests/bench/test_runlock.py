"""Issue 11, case 4: one process owns a run; others wait and say who holds it; a dead owner's lock is taken over."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

from bench.runlock import RunLock
from bench.store import ResultsStore
from tests.bench.planted import run_id_for, tiny_run_args
from tests.bench.runutil import bench_cmd

HOLD = "import sys, time; from bench.runlock import RunLock; RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)"  # noqa: E501


def _holder(run_dir):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_lock_names_its_owner_and_is_free_again_when_the_owner_is_killed(tmp_path):
    holder = _holder(tmp_path)
    lock = RunLock(tmp_path)
    try:
        assert not lock.try_acquire()
        owner = lock.owner()
        assert (owner.host, owner.pid) == (socket.gethostname(), holder.pid)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == holder.pid  # the dead owner's file is still there
    assert lock.owner() is None
    assert lock.try_acquire() and lock.owner().pid == os.getpid()
    lock.release()
    assert lock.owner() is None


def test_run_waits_for_the_owner_naming_it_then_takes_over_from_a_killed_owner(tiny_dataset, tmp_path):
    results = tmp_path / "res"
    run_dir = ResultsStore(results).run_dir(run_id_for(tiny_dataset))
    holder = _holder(run_dir)
    log = tmp_path / "stderr.txt"
    with log.open("w") as err:
        proc = subprocess.Popen(bench_cmd(*tiny_run_args(tiny_dataset, results)), stderr=err, stdout=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and "wait " not in log.read_text() and proc.poll() is None:
        time.sleep(0.1)
    text = log.read_text()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert proc.wait(timeout=600) == 0, log.read_text()[-2000:]
    assert f"another process is running it (pid {holder.pid} on {socket.gethostname()} since" in text
    (summary,) = ResultsStore(results).summaries()
    assert summary.iterations == 2


def test_two_identical_runs_started_together_train_it_once(tiny_dataset, tmp_path):
    args = bench_cmd(*tiny_run_args(tiny_dataset, tmp_path / "res"))
    procs = [subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert sum("done in " in e for e in errs) == 1  # bench run's progress line of a trained run
    assert sum("complete, skipped" in e for e in errs) == 1
