"""OpenVINO as a runtime: ONNX files converted to OpenVINO IR, compiled for the CPU in fp32 or bf16, and int8 models
from NNCF's post-training quantization.

Why OpenVINO next to onnxruntime: on x86 CPUs its 3-D convolution kernels (oneDNN, with AVX-512 / AMX bf16 where the
CPU has them) run one 64x128x128 window of lcovnet 1.6x faster than onnxruntime in fp32 and 3.6x faster in bf16
(issue 29's table); onnxruntime's quantized pooling slows its int8 path, OpenVINO's int8 kernels do not.

Precision is a compile-time setting of the CPU plugin, not a property of the file: the same IR runs in fp32 or bf16.
OpenVINO's own default on a CPU with bf16 is bf16, so fp32 is always asked for explicitly. bf16 where the CPU lacks it
falls back to fp32 and says so (``Precision.note``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from bench.atomic import atomic_path
from bench.deploy.predict import ExternalNetwork
from bench.errors import BenchError

PRECISIONS = ("fp32", "bf16")
_HINTS = {"fp32": "f32", "bf16": "bf16"}


def require_openvino(what: str, int8: bool = False) -> None:
    """One clear line when the optional OpenVINO package (and NNCF, for ``int8``) is missing."""
    try:
        import openvino  # noqa: F401

        if int8:
            import nncf  # noqa: F401
    except ImportError as err:
        raise BenchError(
            f"{what} needs openvino and nncf ({err}); install them with `pip install segkd-bench[openvino]`"
        ) from None


def cpu_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 natively here (AVX-512 BF16 or AMX)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@dataclass(frozen=True)
class Precision:
    """The precision asked for, the one used, and why they differ (empty when they do not)."""

    asked: str
    used: str
    note: str = ""


def resolve_precision(asked: str) -> Precision:
    """``asked`` (fp32 or bf16) as this CPU can run it."""
    if asked not in PRECISIONS:
        raise BenchError(f"--precision: unknown {asked!r}; choose from {', '.join(PRECISIONS)}")
    if asked == "bf16" and not cpu_has_bf16():
        return Precision(asked, "fp32", "this CPU has no native bf16 (AVX-512 BF16 or AMX): ran in fp32 instead")
    return Precision(asked, asked)


def onnx_to_ir(onnx_path: Path, xml_path: Path) -> None:
    """Convert an ONNX file to OpenVINO IR (``xml_path`` and the ``.bin`` next to it), weights kept in fp32.

    ``save_model`` compresses weights to fp16 by default, which would cost the parity check its 1e-3; it is off.
    """
    import openvino as ov

    save_ir(ov.convert_model(str(onnx_path)), xml_path)


def save_ir(model, xml_path: Path) -> None:
    """Write an OpenVINO model as IR; the ``.xml`` and ``.bin`` appear under their names only once both are written
    and the pair reads back."""
    import openvino as ov

    xml_path = Path(xml_path)
    with tempfile.TemporaryDirectory(prefix=".ir-", dir=xml_path.parent) as tmp:
        staged = Path(tmp) / "model.xml"
        ov.save_model(model, str(staged), compress_to_fp16=False)
        ov.Core().read_model(str(staged))
        with atomic_path(xml_path.with_suffix(".bin")) as bin_tmp:
            os.replace(staged.with_suffix(".bin"), bin_tmp)
        with atomic_path(xml_path) as xml_tmp:
            # read_model finds the weights as the .xml's name with .bin, so the pair is renamed, not rewritten.
            os.replace(staged, xml_tmp)


def compile_model(source: Path | object, precision: Precision, threads: int | None = None):
    """An OpenVINO compiled model on the CPU: one stream, latency mode, as many threads as torch uses."""
    import openvino as ov

    config = {
        "INFERENCE_PRECISION_HINT": _HINTS[precision.used],
        "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
    }
    core = ov.Core()
    try:
        model = core.read_model(str(source)) if isinstance(source, (str, Path)) else source
        return core.compile_model(model, "CPU", config)
    except RuntimeError as err:
        raise BenchError(f"{source}: OpenVINO cannot load it ({str(err).strip().splitlines()[0]})") from None


class OpenVinoNetwork(ExternalNetwork):
    """An OpenVINO compiled model that looks like a registered network: ``forward`` returns ``SegOutput`` logits."""

    def __init__(self, compiled, precision: Precision) -> None:
        super().__init__()
        self.compiled = compiled
        self.precision = precision
        self.request = compiled.create_infer_request()

    def forward(self, x: Tensor):
        from models import SegOutput

        out = self.request.infer([x.detach().cpu().float().numpy()], share_inputs=True)[0]
        return SegOutput([torch.from_numpy(np.array(out)).to(x.device)])


def torch_to_openvino(network: nn.Module, in_channels: int, patch: list[int], precision: str) -> OpenVinoNetwork:
    """A PyTorch network compiled by OpenVINO, through the same ONNX export as ``bench export`` (in memory: the
    temporary ONNX file is gone once converted)."""
    import openvino as ov

    from bench.deploy.onnx_export import export_onnx

    resolved = resolve_precision(precision)
    with tempfile.TemporaryDirectory(prefix="segkd-openvino-") as tmp:
        onnx = Path(tmp) / "model.onnx"
        export_onnx(network, in_channels, patch, onnx)
        model = ov.convert_model(str(onnx))
    return OpenVinoNetwork(compile_model(model, resolved), resolved)


def quantize_int8_ir(xml_path: Path, int8_path: Path, patches: Iterator[np.ndarray], count: int) -> None:
    """NNCF's post-training int8 quantization of the IR at ``xml_path`` (default mixed preset: symmetric int8 weights
    per channel, activations from ``count`` calibration patches), written as IR to ``int8_path``."""
    import nncf
    import openvino as ov

    nncf.set_log_level(logging.ERROR)
    samples = list(patches)
    if not samples:
        raise BenchError("int8 calibration got no patches")
    model = ov.Core().read_model(str(xml_path))
    # NNCF draws its own progress bars on stdout, where a command's result goes; the export's bar covers the step.
    with contextlib.redirect_stdout(io.StringIO()):
        quantized = nncf.quantize(model, nncf.Dataset(samples), subset_size=count)
    save_ir(quantized, int8_path)


def gemm_model(precision: str, size: int):
    """A ``size``-square MatMul as an OpenVINO model and the precision to compile it in: for int8 the pattern NNCF
    writes into a quantized model (FakeQuantize on the activations, int8 weights converted and scaled), which the CPU
    plugin's low-precision transformations run as an int8 MatMul; bf16 falls back to fp32 as the networks do."""
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    a = ops.parameter([size, size], np.float32)
    if precision == "int8":
        low, high = ops.constant(np.float32(-4.0)), ops.constant(np.float32(4.0))
        weights = rng.integers(-127, 128, (size, size)).astype(np.int8)
        scaled = ops.multiply(ops.convert(ops.constant(weights), np.float32), ops.constant(np.float32(0.01)))
        product = ops.matmul(ops.fake_quantize(a, low, high, low, high, 256), scaled, False, False)
        return ov.Model([product], [a]), resolve_precision("fp32")
    product = ops.matmul(a, ops.constant(rng.standard_normal((size, size), np.float32)), False, False)
    return ov.Model([product], [a]), resolve_precision(precision)


def openvino_peak(precision: str, size: int = 2048, runs: int = 3):
    """The GEMM rate OpenVINO's CPU plugin reaches here in ``precision`` (fp32, bf16 or int8): ``gemm_model``
    compiled like the networks (same threads, latency mode), median of ``runs`` after one warm-up."""
    from bench.profiling.peak import Peak
    from bench.profiling.timing import time_forward

    model, compiled_as = gemm_model(precision, size)
    request = compile_model(model, compiled_as).create_infer_request()
    x = np.random.default_rng(1).standard_normal((size, size), np.float32)
    timing = time_forward(lambda: request.infer([x]), torch.device("cpu"), 1, runs)
    used = "int8" if precision == "int8" else compiled_as.used
    return Peak(used, size**3 / 1e9 / (timing.median_ms / 1000), size, f"OpenVINO MatMul ({used})")


def machine_peak(precision: str, size: int | None = None):
    """The faster of torch's and OpenVINO's square GEMM in ``precision`` on the CPU: the machine's measured limit
    that an OpenVINO latency is set against. Neither engine is the faster one everywhere: on an AMX Xeon torch's
    bf16 GEMM ran 743 GMAC/s against OpenVINO's 576, OpenVINO's int8 (AMX) 700 against ``torch._int_mm``'s 676."""
    from bench.profiling.peak import CPU_SIZE, measure_peak

    size = size or CPU_SIZE
    candidates = [measure_peak(precision, torch.device("cpu"), size)]
    if precision in (*PRECISIONS, "int8"):
        candidates.append(openvino_peak(precision, size))
    return max(candidates, key=lambda peak: peak.gmacs_per_s)


def ir_files(xml_path: Path) -> tuple[Path, Path]:
    """The two files of an IR: the graph (.xml) and its weights (.bin)."""
    xml_path = Path(xml_path)
    return xml_path, xml_path.with_suffix(".bin")
