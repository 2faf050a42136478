from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _single_intra_op_thread() -> Iterator[None]:
    """The KD tests use tensors of ~10^5 elements, where a second intra-op thread only adds synchronisation.

    Measured on the shared 2-core box under load: the whole directory took 83 s with 2 threads, 11 s with one.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
