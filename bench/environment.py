"""The per-run environment record (nnU-Net's ``debug.json`` idea): where and with what a run was measured."""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import subprocess
from pathlib import Path

import torch


def _git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def cpu_model() -> str:
    """The CPU's model name: ``/proc/cpuinfo`` on Linux (``platform.processor()`` only says ``x86_64`` there; the
    py-cpuinfo package would answer the same at the cost of a subprocess), else ``platform.processor()``."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")) and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_load() -> dict:
    """What a latency figure depends on besides the network: CPU model, logical CPUs, and the 1-minute load average
    when it is taken (a load above the number of CPUs means other work competed for them)."""
    return {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2)}


def environment() -> dict:
    """Host, Python, torch, CUDA, GPU, cuDNN, thread count, CPU kernel set and code version."""
    cuda = torch.cuda.is_available()
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "num_gpus": torch.cuda.device_count() if cuda else 0,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "git_sha": _git_sha(),
    }
