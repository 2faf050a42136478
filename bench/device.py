"""Device selection with CPU fallbacks for every GPU-only feature."""

from __future__ import annotations

import torch

from bench.errors import BenchError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when a GPU is present, else the CPU; ``cuda`` without a GPU is a usage error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BenchError(f"--device {name} was given but no CUDA GPU is available; use --device cpu or auto")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise BenchError(f"--device must be auto, cpu or cuda[:N], got {name!r}")


def amp_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``--amp`` (``bf16``, ``fp16`` or ``off``); fp16 needs CUDA, bf16 works on the CPU too."""
    if name == "off":
        return None
    if name == "bf16":
        return torch.bfloat16
    if name == "fp16":
        if device.type != "cuda":
            raise BenchError("--amp fp16 needs a CUDA device; use --amp bf16 or off on the CPU")
        return torch.float16
    raise BenchError(f"--amp must be bf16, fp16 or off, got {name!r}")


def memory_format(channels_last: bool) -> torch.memory_format:
    """``torch.channels_last_3d`` for 5-D tensors (timm's 2-D ``channels_last`` fails on them)."""
    return torch.channels_last_3d if channels_last else torch.contiguous_format
