"""Shared arguments for tests that run `bench run` on the tiny synthetic set."""

import sys

TINY_RUN = [
    "--preset", "smoke", "--device", "cpu",
    "--set", "spacing=\"keep\"", "--set", "patch=[32, 32, 32]", "--set", "base_channels=4",
    "--set", "batch_size=1", "--set", "profile_runs=1", "--set", "profile_warmup=0", "--set", "val_cases=1",
    "--whole-volume", "32,48,48",
]  # fmt: skip


def bench_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench", *args]


def export_int8(trained_run, out, fmt: str) -> tuple:
    """``bench export --format FMT --quantize int8`` (4 calibration patches) of the trained run into ``out``:
    (results, run id, out, stdout); the export must succeed."""
    import subprocess

    results, run_id = trained_run
    proc = subprocess.run(bench_cmd("export", "--run", run_id, "--results", str(results), "--format", fmt,
                                    "--quantize", "int8", "--calibration-patches", "4", "--out", str(out)),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return results, run_id, out, proc.stdout


def sidecar_of_run(results, run_id: str, path) -> dict:
    """The export sidecar at ``path``, checked to hold the run's deployment spec (labels, preprocessing, window)."""
    import json

    sidecar = json.loads(path.read_text())
    run_spec = json.loads((results / "runs" / run_id / "preprocessing.json").read_text())
    for key in ("labels", "preprocessing", "ct_stats", "patch", "overlap", "model", "run_id"):
        assert sidecar[key] == run_spec[key], key
    return sidecar
