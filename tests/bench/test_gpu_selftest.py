"""The GPU self-test script's CPU mode runs every path (AMP as CPU bf16, KD grid, profiling) end to end."""

import subprocess
import sys


def test_gpu_selftest_cpu_mode_runs_all_paths():
    proc = subprocess.run([sys.executable, "-m", "bench.gpu_selftest", "--device", "cpu", "--quick"],
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "amp/fp32" in proc.stdout
    lines = [line.split() for line in proc.stdout.splitlines() if line.startswith("bf16")]
    assert {(cols[1], cols[2]) for cols in lines} == {("lcovnet", "none"), ("lcovnet", "ca"), ("unet3d", "none")}
    assert "all paths ran on cpu" in proc.stderr
