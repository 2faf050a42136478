"""`benchmarks/bench_deploy.py` on the CPU: every runtime the GPU run uses except torch.compile (its CPU compile takes
about two minutes), the per-patch latency, the whole-CT table and torch.profiler's operator tables."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_deploy.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)


def test_deploy_benchmark_times_each_runtime_and_prints_where_a_window_spends_its_time():
    proc = _run("--device", "cpu", "--models", "lcovnet", "--volume", "32,64,64", "--preset", "smoke",
                "--runtimes", "eager,bf16,ort-fp32,ort-int8", "--base-channels", "4", "--kernels", "4",
                "--calibration-patches", "2", "--patch-runs", "2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = {}
    for line in proc.stdout.splitlines():
        cols = line.split()
        if len(cols) == 7 and cols[0] == "lcovnet":
            table[cols[1]] = cols
    assert set(table) == {"eager", "bf16", "ort-fp32", "ort-int8"}
    for cols in table.values():
        assert float(cols[3]) > 0 and float(cols[4]) > 0, cols  # patch ms and whole-CT seconds were measured
    # Exported fp32 reproduces eager's labels on the phantom CT (the export's own parity limit is 99.9 %).
    assert float(table["ort-fp32"][5]) >= 99.9
    assert table["eager"][2] == "-" and float(table["ort-int8"][2]) > 0  # ONNX file sizes, for the ONNX runtimes
    assert "lcovnet, one window, fp32: top 4 operators" in proc.stdout
    assert "lcovnet, one window, bf16: top 4 operators" in proc.stdout
    assert "Self CPU" in proc.stdout


def test_deploy_benchmark_refuses_an_unknown_runtime_naming_the_choices():
    proc = _run("--runtimes", "eager,tensorrt")
    assert proc.returncode == 2
    assert "--runtimes: unknown tensorrt; choose from eager, bf16, compile, ort-fp32, ort-int8" in proc.stderr
