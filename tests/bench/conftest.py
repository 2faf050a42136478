from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A small synthetic CT set in the nnU-Net layout, generated once per test session."""
    from bench.data.synth import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("data") / "tiny", cases=5, seed=3, size=(32, 48, 48),
                            test_cases=2, progress=False)  # fmt: skip


