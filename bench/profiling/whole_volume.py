"""Whole-CT time: Gaussian-blended sliding-window inference over a CT-sized volume, the time a clinic waits for the
network, as opposed to one forward pass on one patch.

The volume is random (the time does not depend on the values); the timed part is what ``bench predict`` spends in
its ``infer`` step: every window through the network, blending, the argmax and the copy of the labels to the CPU.
One window is run first as a warm-up (allocator, kernel selection); on CUDA each run is timed with CUDA events
after a synchronize.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn


def window_count(volume: Sequence[int], patch: Sequence[int], overlap: float) -> int:
    """How many windows MONAI's ``sliding_window_inference`` runs (its scan interval: ``int(patch * (1 - overlap))``,
    at least 1, over the volume padded up to the patch)."""
    from monai.data.utils import dense_patch_slices

    size = [max(v, p) for v, p in zip(volume, patch)]
    interval = [max(1, int(p * (1 - overlap))) if v > p else p for v, p in zip(size, patch)]
    return len(dense_patch_slices(size, patch, interval))


def whole_volume_seconds(
    network: nn.Module,
    volume: Sequence[int],
    patch: Sequence[int],
    in_channels: int = 1,
    overlap: float = 0.5,
    sw_batch_size: int = 1,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
    runs: int = 1,
) -> dict:
    """``{"whole_volume", "whole_ct_windows", "whole_ct_seconds"}``: the median over ``runs`` of the sliding-window
    labels of a ``[in_channels, *volume]`` volume with ``network`` (a model returning ``SegOutput``)."""
    from bench.inference import predict_logits
    from bench.profiling.timing import time_forward

    device = torch.device(device)
    image = torch.randn(in_channels, *volume, generator=torch.Generator().manual_seed(0))
    network = network.to(device).eval()

    def labels() -> None:
        logits = predict_logits(
            network, image, patch, overlap=overlap, sw_batch_size=sw_batch_size, device=device, amp_dtype=amp_dtype
        )
        logits.argmax(dim=0).to(torch.uint8).cpu()

    with torch.inference_mode():
        network(torch.zeros(1, in_channels, *patch, device=device))
    if device.type == "cuda":
        # CUDA events around each run (time_forward synchronises before and after), the warm-up done above.
        seconds = [ms / 1000 for ms in time_forward(labels, device, warmup=0, runs=runs).latencies_ms]
    else:
        seconds = []
        for _ in range(runs):
            start = time.perf_counter()
            labels()
            seconds.append(time.perf_counter() - start)
    return {
        "whole_volume": list(volume),
        "whole_ct_windows": window_count(volume, patch, overlap),
        "whole_ct_seconds": statistics.median(seconds),
    }
