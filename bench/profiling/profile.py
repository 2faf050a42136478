"""``bench profile`` records: parameters, MACs (fvcore with 3D handlers, thop as a cross-check), latency, memory."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import nn

from bench.device import amp_dtype, memory_format
from bench.environment import machine_load
from bench.errors import BenchError
from bench.networks import build_model, check_patch
from bench.profiling.flops import count_macs, count_macs_thop, thop_caveats
from bench.profiling.timing import time_forward

RECORD_KEYS = (
    "model", "params", "trainable_params", "gmacs", "gflops", "gmacs_thop", "thop_note", "uncounted_ops",
    "latency_ms_median", "latency_ms_p90", "peak_mem_mb", "device", "amp", "channels_last", "patch", "batch",
    "in_channels", "classes", "torch", "threads", "cpu_model", "cpu_count", "load_avg_1min", "whole_volume",
    "whole_ct_windows", "whole_ct_seconds", "gmacs_per_s", "peak_gmacs_per_s", "peak_share", "peak_kernel",
)  # fmt: skip
AMP_PRECISIONS = {"off": "fp32", "bf16": "bf16", "fp16": "fp16"}


@dataclass
class ProfileSettings:
    """What to measure: input geometry, device and precision, and how many warm-up and timed runs."""

    classes: int = 17
    in_channels: int = 1
    patch: tuple[int, int, int] = (64, 128, 128)
    batch: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    amp: str = "off"
    channels_last: bool = False
    warmup: int = 3
    runs: int = 10
    threads: int | None = None
    thop: bool = True
    model_kwargs: dict = field(default_factory=dict)  # width settings passed to the model factory
    # Whole-CT time: sliding windows of ``window`` (default: ``patch``) over a ``whole_volume`` (None: not measured).
    whole_volume: tuple[int, int, int] | None = None
    window: tuple[int, int, int] | None = None
    overlap: float = 0.5
    sw_batch_size: int = 1
    # The side of the square GEMM that measures the machine's peak in the latency's precision (None: peak.py's).
    peak_size: int | None = None


def profile_model(name: str, settings: ProfileSettings) -> dict:
    """Measure one registered model in its inference configuration (deep-supervision heads off)."""
    check_patch(name, settings.patch)
    threads = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        return _profile_model(name, settings)
    finally:
        torch.set_num_threads(threads)


def _profile_model(name: str, settings: ProfileSettings) -> dict:
    kwargs = settings.model_kwargs
    full = build_model(name, settings.in_channels, settings.classes, **kwargs)
    params = sum(p.numel() for p in full.parameters())
    trainable = sum(p.numel() for p in full.parameters() if p.requires_grad)
    del full
    model = build_model(name, settings.in_channels, settings.classes, deep_supervision=False, **kwargs).eval()
    x_cpu = torch.randn(settings.batch, settings.in_channels, *settings.patch)
    try:
        macs = count_macs(model, x_cpu)
    except RuntimeError as err:
        raise BenchError(f"{name} cannot run on patch {'x'.join(map(str, settings.patch))}: {err}") from None
    record = {
        "model": name,
        "params": params,
        "trainable_params": trainable,
        "gmacs": macs.macs / 1e9,
        "gflops": 2 * macs.macs / 1e9,
        "gmacs_thop": count_macs_thop(model, x_cpu) / 1e9 if settings.thop else None,
        "thop_note": "; ".join(thop_caveats(model)),
        "uncounted_ops": sorted(macs.uncounted_ops),
    }
    record.update(_measure_latency(model, x_cpu, settings))
    record.update(_against_peak(record["gmacs"], record["latency_ms_median"], settings))
    record.update(_whole_volume(name, model, settings))
    record.update(
        patch=list(settings.patch),
        batch=settings.batch,
        in_channels=settings.in_channels,
        classes=settings.classes,
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        **machine_load(),  # right after the timed runs: the load they competed with
    )
    return {k: record[k] for k in RECORD_KEYS}


def _against_peak(gmacs: float, latency_ms: float, settings: ProfileSettings) -> dict:
    """The achieved GMAC/s of one timed forward pass and its share of a GEMM's rate in the same precision, measured
    right after it on the same device and threads."""
    from bench.profiling.peak import measure_peak

    peak = measure_peak(AMP_PRECISIONS[settings.amp], settings.device, settings.peak_size)
    achieved, share = peak.share(gmacs, latency_ms / 1000)
    return {
        "gmacs_per_s": achieved,
        "peak_gmacs_per_s": peak.gmacs_per_s,
        "peak_share": share,
        "peak_kernel": f"{peak.kernel} {peak.precision} {peak.size}^3",
    }


def _whole_volume(name: str, model: nn.Module, settings: ProfileSettings) -> dict:
    from bench.profiling.whole_volume import whole_volume_seconds

    if settings.whole_volume is None:
        return {"whole_volume": None, "whole_ct_windows": None, "whole_ct_seconds": None}
    window = tuple(settings.window or settings.patch)
    check_patch(name, window)
    try:
        return whole_volume_seconds(
            model, settings.whole_volume, window, settings.in_channels, settings.overlap, settings.sw_batch_size,
            settings.device, amp_dtype(settings.amp, settings.device),
        )  # fmt: skip
    except torch.cuda.OutOfMemoryError:
        size = "x".join(map(str, settings.whole_volume))
        raise BenchError(f"CUDA out of memory on the whole volume {size}; try --device cpu") from None


def _measure_latency(model: nn.Module, x_cpu: torch.Tensor, settings: ProfileSettings) -> dict:
    device = settings.device
    dtype = amp_dtype(settings.amp, device)
    mem_format = memory_format(settings.channels_last)
    model = model.to(device=device, memory_format=mem_format)
    x = x_cpu.to(device=device, memory_format=mem_format)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()

    def forward() -> None:
        with torch.inference_mode(), autocast:
            model(x)

    try:
        timing = time_forward(forward, device, settings.warmup, settings.runs)
    except torch.cuda.OutOfMemoryError:
        raise BenchError(
            f"CUDA out of memory at patch {'x'.join(map(str, settings.patch))} and batch {settings.batch}; "
            "try a smaller --patch or --batch"
        ) from None
    return {
        "latency_ms_median": timing.median_ms,
        "latency_ms_p90": timing.p90_ms,
        "peak_mem_mb": timing.peak_mem_mb,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "amp": settings.amp,
        "channels_last": settings.channels_last,
    }


def profile_in_fresh_process(name: str, settings: ProfileSettings) -> dict:
    """:func:`profile_model` in a spawned process, so that a training run earlier in this process cannot hide the
    peak memory (on the CPU it is a resident-set increase, which memory already held by the allocator masks)."""
    import multiprocessing

    from bench.interrupt import worker_pool

    with worker_pool(1, "profile", multiprocessing.get_context("spawn")) as pool:
        return pool.apply(profile_model, (name, settings))
