"""The profiling stage: parameters, MACs, latency, memory and whole-CT time of a cell's network, measured in a fresh
process once per network, arguments and protocol of a grid."""

from __future__ import annotations

import json

import torch

from bench.pipeline.inputs import PreparedData
from bench.profiling.profile import ProfileSettings, profile_in_fresh_process
from bench.training.config import RunConfig


def profile_network(name: str, kwargs: dict, data: PreparedData, config: RunConfig, device: torch.device,
                    whole_volume: tuple[int, int, int] | None, cache: dict[str, dict]) -> dict:  # fmt: skip
    """The profile record of network ``name`` with factory arguments ``kwargs`` under ``config``, from ``cache``
    when this grid measured it already (a KD cell's student is profiled as its no-KD cell was)."""
    key = json.dumps([name, kwargs, config.hash()], sort_keys=True, default=str)
    if key not in cache:
        settings = ProfileSettings(
            classes=data.num_classes, in_channels=data.in_channels, patch=tuple(config.patch), batch=1,
            device=device, amp=config.amp, channels_last=config.channels_last and device.type == "cuda",
            warmup=config.profile_warmup, runs=config.profile_runs, thop=False, model_kwargs=kwargs,
            whole_volume=whole_volume, window=tuple(config.eval_patch()), overlap=config.overlap,
            sw_batch_size=config.sw_batch_size,
        )  # fmt: skip
        cache[key] = profile_in_fresh_process(name, settings)
    return cache[key]
