"""`benchmarks/bench_train.py` on the CPU: training iterations per second under a preset, on the data set's organs."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_train.py"


def test_train_benchmark_measures_each_model_on_every_organ_of_the_built_in_set():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--iterations", "2", "--warmup", "1"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = (line.split() for line in proc.stdout.splitlines())
    rates = {cols[0]: cols for cols in rows if len(cols) == 4 and cols[0] in ("lcovnet", "unet3d")}
    assert set(rates) == {"lcovnet", "unet3d"}
    assert float(rates["lcovnet"][1]) > 0 and float(rates["lcovnet"][3]) == 1.0
    assert float(rates["unet3d"][1]) > 0
    assert "preset smoke: patch [32, 32, 32], batch 2, base_channels 8" in proc.stdout
