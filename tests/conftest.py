import os

import pytest

# The test processes share the machine's cores. Under pytest-xdist (tox runs `-n auto`) each worker, and every process
# its tests start (bench run, its profiling and worker subprocesses), gets the cores divided by the workers: 2 torch
# processes with 2 threads each on 2 cores run 10-20x slower (OpenMP oversubscription). Set before torch is imported.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_THREADS = max(1, min(2, (os.cpu_count() or 1) // _WORKERS))
if _WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(_THREADS)

import torch  # noqa: E402

torch.set_num_threads(_THREADS)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
