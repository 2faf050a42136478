"""This machine's measured limit: a dense GEMM micro-benchmark in the same process, threads and precision as the
latency it is set against, so a latency table can say how much of the reachable compute a network uses.

A network far below the GEMM's rate is bound by memory traffic and element-wise work (pooling, up-sampling,
normalisation, activations), not by its MACs; one near it is compute-bound and only fewer MACs or a faster precision
make it quicker. A square GEMM is the densest work the BLAS / oneDNN kernels do, so its rate is the practical peak
(a theoretical peak from clock and vector width is not reachable and depends on turbo states we cannot read).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.int8}
CPU_SIZE, GPU_SIZE = 2048, 8192


@dataclass(frozen=True)
class Peak:
    """The GEMM rate of one precision on one device."""

    precision: str
    gmacs_per_s: float
    size: int
    kernel: str

    def share(self, gmacs: float, seconds: float) -> tuple[float, float]:
        """(achieved GMAC/s, its share of this peak) of ``gmacs`` multiply-accumulates done in ``seconds``."""
        achieved = gmacs / seconds
        return achieved, achieved / self.gmacs_per_s


def measure_peak(precision: str, device: torch.device | None = None, size: int | None = None, runs: int = 3) -> Peak:
    """Median GMAC/s of ``runs`` ``size``-square matrix products in ``precision`` after one warm-up, with torch's
    current thread count. int8 uses ``torch._int_mm`` (int8 in, int32 accumulate), the others ``torch.mm``."""
    from bench.profiling.timing import time_forward

    device = device or torch.device("cpu")
    size = size or (GPU_SIZE if device.type == "cuda" else CPU_SIZE)
    dtype = _DTYPES[precision]
    if precision == "int8":
        a = torch.randint(-64, 64, (size, size), dtype=dtype, device=device)
        b = torch.randint(-64, 64, (size, size), dtype=dtype, device=device)
        kernel, product = "torch._int_mm", torch._int_mm
    else:
        a = torch.randn(size, size, device=device).to(dtype)
        b = torch.randn(size, size, device=device).to(dtype)
        kernel, product = "torch.mm", torch.mm
    timing = time_forward(lambda: product(a, b), device, 1, runs)
    return Peak(precision, size**3 / 1e9 / (timing.median_ms / 1000), size, kernel)
