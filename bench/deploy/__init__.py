"""From a trained run to a running model: prediction on new CTs, ONNX export, int8 quantization."""

from __future__ import annotations

from bench.errors import BenchError


def require_onnx(what: str) -> None:
    """One clear line when the optional ONNX packages are missing."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as err:
        raise BenchError(
            f"{what} needs onnx and onnxruntime ({err}); install them with `pip install segkd-bench[deploy]`"
        ) from None
