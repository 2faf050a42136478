from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A small synthetic CT set in the nnU-Net layout, generated once per test session."""
    from bench.data.synth import generate_dataset

    return generate_dataset(
        tmp_path_factory.mktemp("data") / "tiny", cases=5, seed=3, size=(32, 48, 48), test_cases=2, progress=False
    )


@pytest.fixture(scope="session")
def finished_store(tiny_dataset, tmp_path_factory) -> Path:
    """A results store holding one complete tiny lcovnet run (2 iterations) on ``tiny_dataset``; copy it before
    planting anything in it."""
    import subprocess

    from tests.bench.planted import tiny_run_args
    from tests.bench.runutil import bench_cmd

    results = tmp_path_factory.mktemp("finished") / "results"
    proc = subprocess.run(bench_cmd(*tiny_run_args(tiny_dataset, results)), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return results


@pytest.fixture(scope="session")
def trained_run(tiny_dataset, tmp_path_factory) -> tuple[Path, str]:
    """(results store, run id) of one lcovnet run on the tiny set, trained long enough (40 iterations at lr 0.05)
    to predict organs rather than only background, with its test predictions saved."""
    import subprocess

    from bench.store import ResultsStore
    from tests.bench.runutil import TINY_RUN, bench_cmd

    results = tmp_path_factory.mktemp("trained") / "results"
    args = bench_cmd("run", "--models", "lcovnet", "--data", str(tiny_dataset), "--results", str(results), *TINY_RUN,
                     "--set", "iterations=40", "--set", "val_every=40", "--set", "lr=0.05",
                     "--save-predictions")  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (summary,) = ResultsStore(results).summaries()
    return results, summary.run_id
