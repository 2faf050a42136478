"""MAC counting by tracing with fvcore, extended so that every op the registered 3D networks use is counted.

fvcore counts one multiply-accumulate as one "flop" (so its totals are MACs) and covers convolutions (transposed
ones correctly), matmuls and norms, but treats 3D pooling and up-sampling, activations, sigmoid gates and
element-wise arithmetic as unsupported, and silently ignores ReLU. The
handlers below close those gaps with these conventions, per output element unless stated:

- activations, sigmoid/tanh/softmax, element-wise add/sub/mul/div: 1 MAC;
- max/avg pooling: kernel volume MACs; adaptive pooling: 1 MAC per input element;
- trilinear up-sampling: 8 MACs (weighted sum of 8 neighbours); nearest up-sampling, concatenation, padding,
  dropout and copies: 0 MACs, but counted, so they do not show up as uncounted.

Whatever the trace still meets without a handler is returned in ``uncounted_ops``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import get_shape
from torch import Tensor, nn

_Handle = Callable[[list[Any], list[Any]], int]


def _numel(value: Any) -> int:
    shape = get_shape(value)
    return math.prod(shape) if shape else 1


def _per_output(macs_per_element: int) -> _Handle:
    def handle(inputs: list[Any], outputs: list[Any]) -> int:
        return macs_per_element * _numel(outputs[0])

    return handle


def _per_input(inputs: list[Any], outputs: list[Any]) -> int:
    return _numel(inputs[0])


def _zero(inputs: list[Any], outputs: list[Any]) -> int:
    return 0


def _pool(inputs: list[Any], outputs: list[Any]) -> int:
    kernel = inputs[1].toIValue()
    if kernel is None:  # a list built in the graph (prim::ListConstruct of constants)
        kernel = [v.toIValue() for v in inputs[1].node().inputs()]
    dims = len(get_shape(inputs[0])) - 2
    if isinstance(kernel, int):
        kernel = [kernel] * dims
    return math.prod(kernel) * _numel(outputs[0])


def _sdpa(inputs: list[Any], outputs: list[Any]) -> int:
    q, k = get_shape(inputs[0]), get_shape(inputs[1])
    # QK^T plus attention-weighted V: 2 * (batch dims) * L * S * E
    return 2 * math.prod(q[:-1]) * k[-2] * q[-1]


_UNARY = ["relu", "relu_", "leaky_relu", "leaky_relu_", "hardtanh", "hardtanh_", "sigmoid", "sigmoid_", "tanh",
          "gelu", "silu", "silu_", "elu", "elu_", "prelu", "softmax", "log_softmax", "exp", "sqrt", "rsqrt",
          "neg", "abs", "pow", "clamp", "clamp_", "clamp_min", "erf", "reciprocal"]  # fmt: skip
_BINARY = ["add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "rsub", "maximum", "minimum", "where"]
_FREE = ["cat", "constant_pad_nd", "pad", "reflection_pad3d", "replicate_pad3d", "dropout", "dropout_",
         "feature_dropout", "upsample_nearest3d", "upsample_nearest2d", "pixel_shuffle", "clone", "contiguous",
         "repeat", "roll", "fill_", "zero_", "masked_fill", "expand_as", "view_as", "linspace", "meshgrid",
         "ones_like", "new_ones", "split", "flip", "type_as", "detach", "alias", "slice", "unfold", "index_select",
         "im2col", "col2im"]  # fmt: skip

EXTRA_HANDLES: dict[str, _Handle] = {
    **{f"aten::{op}": _per_output(1) for op in _UNARY + _BINARY},
    **{f"aten::{op}": _zero for op in _FREE},
    "aten::max_pool3d": _pool,
    "aten::avg_pool3d": _pool,
    "aten::max_pool2d": _pool,
    "aten::avg_pool2d": _pool,
    "aten::adaptive_avg_pool3d": _per_input,
    "aten::adaptive_max_pool3d": _per_input,
    "aten::adaptive_avg_pool1d": _per_input,
    "aten::upsample_trilinear3d": _per_output(8),
    "aten::scaled_dot_product_attention": _sdpa,
    # comparisons building masks (Swin-UNETR attention masks); fvcore already ignores eq/gt/ge
    **{f"aten::{op}": _zero for op in ("ne", "lt", "le")},
}
# reductions over a tensor touch each input element once
for _op in ("mean", "sum", "norm", "linalg_vector_norm", "var", "std", "max", "amax", "argmax", "cumsum"):
    EXTRA_HANDLES[f"aten::{_op}"] = _per_input


class _TraceableOutputs(nn.Module):
    """JIT tracing accepts tuples only, so expose a model's ``SegOutput`` logits as a tuple."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.model(x).logits)


@dataclass
class MacCount:
    """Result of :func:`count_macs`: total MACs, MACs per operator kind, and ops left uncounted."""

    macs: int
    by_operator: dict[str, int]
    uncounted_ops: dict[str, int]


def count_macs(model: nn.Module, x: Tensor) -> MacCount:
    """MACs of one forward pass of ``model`` (a registered network returning ``SegOutput``) on ``x``."""
    analysis = FlopCountAnalysis(_TraceableOutputs(model).eval(), (x,))
    analysis.set_op_handle(**EXTRA_HANDLES)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        total = int(analysis.total())
        by_operator = {k: int(v) for k, v in analysis.by_operator().items()}
        uncounted = dict(Counter(analysis.unsupported_ops()))
    return MacCount(total, by_operator, uncounted)


def count_macs_thop(model: nn.Module, x: Tensor) -> int:
    """thop's MAC count as a cross-check; thop hooks modules, so run it on a copy (it adds buffers)."""
    import copy

    import thop

    clone = copy.deepcopy(model).eval()
    with torch.no_grad(), warnings.catch_warnings(), _without_thop_log_records():
        warnings.simplefilter("ignore")
        macs, _ = thop.profile(_TraceableOutputs(clone), inputs=(x,), verbose=False)
    return int(macs)


@contextlib.contextmanager
def _without_thop_log_records() -> Iterator[None]:
    """Drop the records thop logs (a warning per trilinear Upsample it cannot count), only while this runs.

    thop logs through the root logger (``logging.warning``), which would also configure a stderr handler on an
    unconfigured root for good; a filter on the root logger, and on an unconfigured root a temporary handler that
    is logging's own last resort (what an unconfigured root uses anyway), keep both effects inside this block.
    """
    root = logging.getLogger()
    stand_in = (logging.lastResort or logging.NullHandler()) if not root.handlers else None
    if stand_in is not None:
        root.addHandler(stand_in)
    root.addFilter(_not_from_thop)
    try:
        yield
    finally:
        root.removeFilter(_not_from_thop)
        if stand_in is not None:
            root.removeHandler(stand_in)


def _not_from_thop(record: logging.LogRecord) -> bool:
    return f"{os.sep}thop{os.sep}" not in record.pathname


def thop_caveats(model: nn.Module) -> list[str]:
    """Known reasons why thop's figure is wrong for this model (``docs/model-zoo.md`` §3)."""
    notes = []
    if any(isinstance(m, nn.ConvTranspose3d | nn.ConvTranspose2d) for m in model.modules()):
        notes.append("thop counts ConvTranspose by output size (stride^3 too high)")
    named = sum(1 for _ in model.named_modules(remove_duplicate=False))
    if named != sum(1 for _ in model.modules()):
        notes.append("thop counts modules reachable through two parents repeatedly")
    if any(m.__class__.__name__ == "Upsample" and getattr(m, "mode", "") == "trilinear" for m in model.modules()):
        notes.append("thop counts trilinear up-sampling as 0")
    return notes
