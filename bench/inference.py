"""Whole-volume prediction by Gaussian-blended sliding windows (MONAI's ``sliding_window_inference``).

Volumes smaller than the patch are padded (zeros) up to it and the output is cropped back, so the output always has
the input's spatial shape. Windows run on ``device``; the stitched logits can be kept on the CPU instead
(``stitch_device``) so that a large volume does not have to fit in GPU memory next to the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import Tensor, nn

from bench.errors import BenchError

# "auto" stitching budget per voxel: 32 float32 channels (logits plus MONAI's count map) covers 31 classes.
_STITCH_BYTES_PER_VOXEL = 32 * 4
BLENDS = ("gaussian", "constant")


def predict_logits(
    model: nn.Module,
    image: Tensor,
    patch: Sequence[int],
    overlap: float = 0.5,
    sw_batch_size: int = 1,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
    stitch_device: torch.device | str = "auto",
    progress: bool = False,
    blend: str = "gaussian",
) -> Tensor:
    """Full-resolution float32 logits of ``model`` over a ``[C, D, H, W]`` or ``[1, C, D, H, W]`` image.

    The result has the image's rank and spatial shape with ``C`` replaced by the number of classes, and lies on
    ``stitch_device``. ``model`` must return :class:`models.SegOutput`; it is moved to ``device`` (in
    ``memory_format``) and put in eval mode. ``amp_dtype`` runs the windows under autocast (bf16 on CPU or CUDA,
    fp16 on CUDA only). ``stitch_device="auto"`` stitches on ``device`` unless it is a GPU whose free memory is
    short of half a 32-channel float32 copy of the volume, in which case it stitches on the CPU. ``blend`` weights
    the overlapping windows: ``gaussian`` (nnU-Net's, the default) or ``constant`` (a plain mean, which skips the
    importance map's cost; without overlap both give the same logits).
    """
    device = torch.device(device)
    if amp_dtype == torch.float16 and device.type != "cuda":
        raise BenchError(f"fp16 autocast needs a CUDA device, got {device}; use bf16 or no autocast on the CPU")
    if image.ndim == 4:
        batch = image[None]
    elif image.ndim == 5 and image.shape[0] == 1:
        batch = image
    else:
        raise BenchError(f"image must be [C, D, H, W] or [1, C, D, H, W], got shape {tuple(image.shape)}")
    if len(patch) != 3:
        raise BenchError(f"patch must have 3 sides (D, H, W), got {tuple(patch)}")
    if blend not in BLENDS:
        raise BenchError(f"blend must be one of {', '.join(BLENDS)}, got {blend!r}")
    stitch = _stitch_device(stitch_device, device, batch.shape[2:].numel())
    model.to(device=device, memory_format=memory_format).eval()

    def predictor(window: Tensor) -> Tensor:
        window = window.contiguous(memory_format=memory_format)
        autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
        with autocast:
            logits = model(window).logits[0]
        # Blend in float32: bf16 accumulation of many overlapping windows loses precision.
        return logits.float().contiguous()

    with torch.inference_mode():
        logits = sliding_window_inference(
            batch.float(),
            roi_size=tuple(patch),
            sw_batch_size=sw_batch_size,
            predictor=predictor,
            overlap=overlap,
            mode=blend,
            sw_device=device,
            device=stitch,
            progress=progress,
        )
    logits = torch.as_tensor(logits)
    return logits if image.ndim == 5 else logits[0]


def predict_labels(model: nn.Module, image: Tensor, patch: Sequence[int], **kwargs) -> np.ndarray:
    """Label volume ``uint8 (D, H, W)``: the argmax over classes of :func:`predict_logits` (same arguments)."""
    logits = predict_logits(model, image, patch, **kwargs)
    if logits.ndim == 5:
        logits = logits[0]
    if logits.shape[0] > 256:
        raise BenchError(f"{logits.shape[0]} classes do not fit in uint8 labels")
    return logits.argmax(dim=0).to(torch.uint8).cpu().numpy()


def _stitch_device(choice: torch.device | str, device: torch.device, voxels: int) -> torch.device:
    if choice != "auto":
        return torch.device(choice)
    if device.type != "cuda":
        return device
    free, _ = torch.cuda.mem_get_info(device)
    return device if voxels * _STITCH_BYTES_PER_VOXEL <= free / 2 else torch.device("cpu")
