"""Latency and peak-memory measurement of a forward pass, on CUDA or the CPU."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil
import torch


@dataclass
class Timing:
    """Per-run latencies in milliseconds and the peak memory in MB during the runs."""

    latencies_ms: list[float]
    peak_mem_mb: float

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p90_ms(self) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


class PeakRSS:
    """Peak resident-set increase of this process while the block runs, sampled by a background thread.

    CPU memory has no allocator statistics like ``torch.cuda.max_memory_allocated``; sampling RSS every
    ``interval`` seconds catches the activations of any forward pass lasting longer than that.
    """

    def __init__(self, interval: float = 0.0005) -> None:
        self.interval = interval
        self._process = psutil.Process()
        self._stop = threading.Event()
        self.baseline = self.peak = 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.baseline = self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def increase_mb(self) -> float:
        return (self.peak - self.baseline) / 2**20


def time_forward(fn: Callable[[], object], device: torch.device, warmup: int, runs: int) -> Timing:
    """Time ``fn`` after ``warmup`` calls: CUDA events after a synchronize on CUDA, ``perf_counter`` on the CPU."""
    if device.type == "cuda":
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        latencies = []
        for _ in range(runs):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            latencies.append(start.elapsed_time(end))
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        return Timing(latencies, peak)
    with PeakRSS() as rss:
        for _ in range(warmup):
            fn()
        latencies = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            latencies.append((time.perf_counter() - t0) * 1000)
    return Timing(latencies, rss.increase_mb)
