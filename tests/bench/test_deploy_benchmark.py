"""`benchmarks/bench_deploy.py` on the CPU: every runtime the GPU run uses except torch.compile (its CPU compile takes
about two minutes), the per-patch latency, the whole-CT table and torch.profiler's operator tables."""

import subprocess
import sys
from pathlib import Path

import pytest

from bench.deploy.openvino_runtime import cpu_has_bf16

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_deploy.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)


def test_deploy_benchmark_times_each_runtime_and_prints_where_a_window_spends_its_time():
    proc = _run("--device", "cpu", "--models", "lcovnet", "--volume", "32,64,64", "--preset", "smoke",
                "--runtimes", "eager,bf16,ort-fp32,ort-int8,ov-fp32,ov-bf16,ov-int8", "--base-channels", "4",
                "--kernels", "4", "--calibration-patches", "2", "--patch-runs", "2", "--e2e", "24,48,48",
                "--e2e-runtimes", "pytorch,openvino-bf16,ir-fp32", "--peak-size", "256")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = {}
    for line in proc.stdout.splitlines():
        cols = line.split()
        if len(cols) == 10 and cols[0] == "lcovnet":
            table[cols[1]] = cols
    assert set(table) == {"eager", "bf16", "ort-fp32", "ort-int8", "ov-fp32", "ov-bf16", "ov-int8"}
    bf16 = "bf16" if cpu_has_bf16() else "fp32"
    assert {k: c[2] for k, c in table.items()} == {"eager": "fp32", "bf16": "bf16", "ort-fp32": "fp32",
                                                   "ort-int8": "int8", "ov-fp32": "fp32", "ov-bf16": bf16,
                                                   "ov-int8": "int8"}  # fmt: skip
    for cols in table.values():
        patch_ms, rate, share, whole = (float(cols[i]) for i in (4, 5, 6, 7))
        assert patch_ms > 0 and whole > 0 and rate > 0 and share > 0, cols  # every figure was measured
    # Exported fp32 reproduces eager's labels on the phantom CT (the export's own parity limit is 99.9 %).
    assert float(table["ort-fp32"][8]) >= 99.9 and float(table["ov-fp32"][8]) >= 99.9
    assert table["eager"][3] == "-" and float(table["ort-int8"][3]) > 0 and float(table["ov-int8"][3]) > 0
    assert "peak GMAC/s (square GEMM, same process and threads): fp32" in proc.stdout
    lines = proc.stdout.splitlines()
    e2e = {line.split()[0]: line.split() for line in lines if line.startswith(("pytorch ", "openvino-", "ir-"))}
    assert set(e2e) == {"pytorch", "openvino-bf16", "ir-fp32"} and e2e["openvino-bf16"][1:3] == ["openvino", bf16]
    assert e2e["ir-fp32"][1:3] == ["openvino", "fp32"]
    for cols in e2e.values():
        steps = [float(v) for v in cols[-9:-3]]  # read, locate, preprocess, infer, restore, write
        assert all(s >= 0 for s in steps) and sum(steps) == pytest.approx(float(cols[-3]), abs=0.03)
        assert float(cols[-2]) >= float(cols[-3]) and float(cols[-1]) > 50  # process seconds, peak RSS in MB
    assert "lcovnet, one window, fp32: top 4 operators" in proc.stdout
    assert "lcovnet, one window, bf16: top 4 operators" in proc.stdout
    assert "Self CPU" in proc.stdout


def test_deploy_benchmark_refuses_an_unknown_runtime_naming_the_choices():
    proc = _run("--runtimes", "eager,tensorrt")
    assert proc.returncode == 2
    assert "--runtimes: unknown tensorrt; choose from eager, bf16, compile, ort-fp32, ort-int8, ov-fp32" in proc.stderr
