"""Pairing student and teacher scales, and resampling the teacher onto the student's grid.

Conventions shared by every method (each method's docstring says which of these it uses):

- Scales are paired full resolution first: student scale ``i`` with teacher scale ``i``, for the first
  ``min(len(student), len(teacher))`` scales (optionally capped further by the method).
- When the spatial sizes of a pair differ (e.g. an nnU-Net teacher that pools [1, 2, 2] first), the **teacher**
  tensor is resampled trilinearly (``align_corners=False``) to the student's size, so the loss is always computed on
  the student's grid; labels are resampled with ``nearest``.
- Every returned tensor is fp32; teacher tensors are detached (the teacher runs under ``no_grad`` anyway, but the
  loss must not depend on that).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from kd_methods._errors import KDMethodError


def common_scales(student: Sequence[Tensor], teacher: Sequence[Tensor], limit: int | None = None) -> int:
    """Number of scale pairs: the shorter list's length, capped at ``limit``."""
    n = min(len(student), len(teacher))
    return n if limit is None else min(n, limit)


def resize_to(x: Tensor, size: Sequence[int]) -> Tensor:
    """``x`` [B, C, D, H, W] resampled trilinearly to spatial ``size``; unchanged when it already has that size."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="trilinear", align_corners=False)


def at_least_fp32(x: Tensor) -> Tensor:
    """``x`` in fp32 when it is half or bfloat16 (AMP activations); fp32 and fp64 pass unchanged, so the losses can
    be evaluated in float64 (the golden-value tests do, to be exact across CPU kinds)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def paired(
    student: Sequence[Tensor], teacher: Sequence[Tensor], limit: int | None = None
) -> list[tuple[Tensor, Tensor]]:
    """``(student_i, teacher_i)`` fp32 (or fp64) pairs on the student's grid, teacher detached, full resolution
    first."""
    n = common_scales(student, teacher, limit)
    return [
        (at_least_fp32(s), resize_to(at_least_fp32(t.detach()), s.shape[2:])) for s, t in zip(student[:n], teacher[:n])
    ]


def labels_at(target: Tensor, size: Sequence[int]) -> Tensor:
    """Integer labels [B, D, H, W] resampled with ``nearest`` to spatial ``size`` (int64)."""
    if tuple(target.shape[1:]) == tuple(size):
        return target.long()
    resized = F.interpolate(target[:, None].float(), size=tuple(size), mode="nearest")
    return resized[:, 0].round().long()


def scale_weights(base: Sequence[float], n: int) -> list[float]:
    """The first ``min(n, len(base))`` weights of ``base``, renormalised to sum to the sum of ``base``.

    With the paper's [0.4, 0.2, 0.2, 0.2] and four scales this is the identity; with fewer scales available the
    weights keep their ratios (two scales -> [2/3, 1/3]) so the loss keeps the same overall magnitude.
    """
    used = [float(w) for w in base[: min(n, len(base))]]
    if not used or sum(used) <= 0:
        raise KDMethodError(f"need at least one positive scale weight, got {list(base)} for {n} scale(s)")
    factor = sum(float(w) for w in base) / sum(used)
    return [w * factor for w in used]


def require_features(student_features: Sequence[Tensor], teacher_features: Sequence[Tensor], method: str) -> None:
    """Raise a clear error when either output carries no decoder features."""
    for side, feats in (("student", student_features), ("teacher", teacher_features)):
        if not feats:
            raise KDMethodError(f"{method} distils decoder features, but the {side} SegOutput has no `features`")


def feature_pair_at(
    student_features: Sequence[Tensor], teacher_features: Sequence[Tensor], scale: int, method: str
) -> tuple[int, Tensor, Tensor]:
    """``(s, student_s, teacher_s)`` for one decoder scale ``s = min(scale, common scales - 1)`` (full resolution
    is 0), aligned as :func:`paired` does; for methods that tap a single decoder stage."""
    require_features(student_features, teacher_features, method)
    s = min(scale, common_scales(student_features, teacher_features) - 1)
    ((f_s, f_t),) = paired(student_features[s : s + 1], teacher_features[s : s + 1])
    return s, f_s, f_t


def single_scale(student_channels: Sequence[int], teacher_channels: Sequence[int], scale: int, method: str) -> int:
    """The scale index a single-stage method builds its adapter for: ``scale`` capped at the last paired scale."""
    n = min(len(student_channels), len(teacher_channels))
    if n == 0:
        raise KDMethodError(f"{method} distils decoder features and needs student_channels and teacher_channels")
    if scale < 0:
        raise KDMethodError(f"{method}: scale must be >= 0 (0 = full resolution), got {scale}")
    return min(scale, n - 1)
