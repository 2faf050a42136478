"""ONNX export of a registered network with dynamic batch and spatial axes, checked by onnx's checker.

torch 2.13 offers two exporters. The TorchDynamo one (``dynamo=True``) needs the extra ``onnxscript`` package and
expresses dynamic sizes through ``torch.export`` constraints, which every model's stride would have to be written
into; the TorchScript tracer (``dynamo=False``) exports lcovnet, unet3d and nnunet with ``dynamic_axes`` alone, and
its ONNX files matched PyTorch to < 1e-4 on volumes of another size than the traced one. So the tracer is used.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from bench.atomic import atomic_path

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "logits"


class MainLogits(nn.Module):
    """The full-resolution logits of a network returning ``SegOutput``: the one output a deployed model has."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: Tensor) -> Tensor:
        return self.network(x).logits[0]


def export_onnx(network: nn.Module, in_channels: int, patch: list[int], path: Path, opset: int = OPSET) -> None:
    """Trace ``network`` (eval mode) on a ``[1, in_channels, *patch]`` input into ``path``, with the batch and the
    three spatial axes dynamic, and check the file with ``onnx.checker`` (full check, shape inference included).

    The file appears under ``path`` only once it passed the check (``bench.atomic``: a graph failing it is one
    line naming the file).
    """
    path = Path(path)
    axes = {0: "batch", 2: "depth", 3: "height", 4: "width"}
    wrapper = MainLogits(network).eval()
    with atomic_path(path, verify=check_onnx) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python-side shape arithmetic and on the exporter
        torch.onnx.export(
            wrapper, (torch.zeros(1, in_channels, *patch),), str(tmp), dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
        )  # fmt: skip


def check_onnx(path: Path, full_check: bool = True) -> None:
    """onnx's check of the file at ``path`` (with ``full_check``, shape inference included): it reads the whole
    file back."""
    import onnx

    onnx.checker.check_model(str(path), full_check=full_check)
