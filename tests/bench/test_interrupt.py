"""Ctrl-C machinery: held blocks finish before the interrupt is raised, and pool workers never see SIGINT."""

import os
import signal
import subprocess
import sys

import pytest

from bench.interrupt import DeferredInterrupt, sigint_held


def _ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    signal.pthread_sigmask(signal.SIG_BLOCK, [])  # a call that runs the Python handlers of the signals that came


def test_a_ctrl_c_inside_a_held_block_is_raised_when_the_block_ends():
    done = []
    with pytest.raises(KeyboardInterrupt), sigint_held():
        _ctrl_c()
        done.append("rest of the block")
    assert done == ["rest of the block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_held_block_inside_a_deferred_one_leaves_the_interrupt_to_the_deferred_blocks_end():
    done = []
    interrupt = DeferredInterrupt()
    with interrupt, pytest.raises(KeyboardInterrupt):
        with interrupt.deferred():
            with sigint_held():
                _ctrl_c()
            done.append("rest of the step")
        done.append("after the step")
    assert done == ["rest of the step"]


def test_pool_workers_never_see_sigint_even_when_the_pool_is_the_first_of_the_process():
    # In a fresh process: starting multiprocessing's resource tracker, which the first pool does, unblocks SIGINT.
    code = (
        "import multiprocessing, os\n"
        "from bench.interrupt import worker_pool\n"
        "with worker_pool(2, 'test', multiprocessing.get_context('spawn')) as pool:\n"
        "    pids = {pool.apply_async(os.getpid).get() for _ in range(8)}\n"
        "    for pid in pids:\n"
        "        print(open(f'/proc/{pid}/status').read().split('SigBlk:')[1].split()[0])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    masks = [int(mask, 16) for mask in proc.stdout.split()]
    assert masks and all(mask & 1 << (signal.SIGINT - 1) for mask in masks)
