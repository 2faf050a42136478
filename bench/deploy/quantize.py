"""Post-training int8 quantization with onnxruntime's static quantizer, calibrated on training patches.

Why onnxruntime rather than ``torch.ao``: the result must run where the float ONNX file runs (onnxruntime on CPU or
GPU), and ``torch.ao``'s eager and FX workflows need hand-placed quant stubs per network and quantized Conv3d kernels
that exist for the fbgemm CPU backend only. onnxruntime quantizes the exported graph as it is, with no change to the
networks: QDQ format, int8 weights per output channel (symmetric), uint8 activations, ranges from MinMax calibration
on patches drawn the way training draws them (a third forced onto foreground, no augmentation).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from bench.atomic import atomic_path
from bench.data.preprocess import PreparedCase
from bench.deploy.onnx_export import INPUT_NAME, check_onnx
from bench.errors import BenchError

CALIBRATION_SEED = 0


def calibration_patches(cases: Sequence[PreparedCase], patch: Sequence[int], count: int) -> Iterator[np.ndarray]:
    """``count`` float32 patches ``[1, C, *patch]`` from the training cases, a third of them on foreground."""
    from bench.data.sampler import PatchDataset

    dataset = PatchDataset(cases, patch, fg_fraction=1 / 3, augment=False, seed=CALIBRATION_SEED)
    rng = np.random.default_rng(CALIBRATION_SEED)
    for i in range(count):
        yield dataset.sample(rng, forced=dataset.is_forced(i))["image"].numpy()[None]


def quantize_int8(float_path: Path, int8_path: Path, patches: Iterator[np.ndarray]) -> None:
    """Write the static int8 (QDQ) version of the ONNX file ``float_path`` to ``int8_path`` (atomically)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def get_next(self) -> dict | None:
            patch = next(patches, None)
            return None if patch is None else {INPUT_NAME: patch}

    int8_path = Path(int8_path)
    with tempfile.TemporaryDirectory(prefix=".quantize-", dir=int8_path.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Folds constants and infers shapes first, as onnxruntime recommends before quantizing; symbolic shape
        # inference is skipped because the spatial axes are dynamic.
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        out = Path(tmp) / "int8.onnx"
        try:
            quantize_static(
                str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
            )  # fmt: skip
        except StopIteration:
            raise BenchError("int8 calibration got no patches") from None
        with atomic_path(int8_path, verify=partial(check_onnx, full_check=False)) as staged:
            os.replace(out, staged)
