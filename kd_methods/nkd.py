"""Normalized KD: target-class soft cross-entropy plus KL-style matching of the normalised non-target distribution."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import Tensor

from kd_methods._align import labels_at, paired
from kd_methods._base import KDMethod
from kd_methods._errors import KDMethodError
from kd_methods._ops import labelled_rows
from kd_methods._registry import register_kd_method

if TYPE_CHECKING:
    from models import SegOutput


@register_kd_method(
    "nkd",
    description="Normalized KD: teacher-weighted target CE + non-target distribution matching (needs labels)",
    reference="Yang et al., ICCV 2023, 'From Knowledge Distillation to Self-Knowledge Distillation: A Unified "
    "Approach with Normalized Loss and Customized Soft Labels', arXiv:2303.13005; https://github.com/yzd-v/cls_KD; "
    "3D port: 605671435/ACF-BCKD razor/models/losses/nkd.py",
)
class NormalizedKD(KDMethod):
    """L = weight * (L_target + L_non), per voxel v with label y_v:

    - L_target = -mean_v T_y log S_y, T = softmax(z_T), S = softmax(z_S) at temperature 1;
    - L_non = -gamma * temp^2 * mean_v sum_{c != y} T^_c log S^_c, with T^, S^ the softmax at ``temp`` over the
      K - 1 non-target logits (the normalised non-target distribution).

    | hyper-parameter | default | source                                           |
    |-----------------|---------|--------------------------------------------------|
    | temp            | 1       | official cls_KD default, ACF 3D configs          |
    | gamma           | 1.5     | official cls_KD default, ACF 3D configs          |
    | weight          | 1       | ACF 3D configs (no factor)                       |

    Kept in the official cross-entropy form, so the value equals the reference code's. It is therefore not 0 at
    equality: the target term rewards confidence in the labelled class (its minimum over the student is not the
    teacher's prediction) and the non-target term equals gamma temp^2 times the teacher's non-target entropy there.
    Invariant to per-voxel logit shifts. Full-resolution logits only; the teacher's are resampled trilinearly to the
    student's size; labels outside [0, K) are left out.
    """

    needs_target = True

    def __init__(
        self,
        student_channels: list[int],
        teacher_channels: list[int],
        num_classes: int,
        temp: float = 1.0,
        gamma: float = 1.5,
        weight: float = 1.0,
    ):
        """Build the loss for networks with the given feature channels and class count.

        Args:
            temp: temperature of the non-target distributions (the non-target term is scaled by temp^2). [paper: 1]
            gamma: factor on the non-target term. [paper: 1.5]
            weight: factor on the whole loss.
        """
        super().__init__(student_channels, teacher_channels, num_classes, weight)
        if temp <= 0:
            raise KDMethodError(f"nkd: temp must be positive, got {temp}")
        self.temp = float(temp)
        self.gamma = float(gamma)

    def extra_repr(self) -> str:
        return f"weight={self.weight:g}, temp={self.temp:g}, gamma={self.gamma:g}"

    def compute(self, student_out: SegOutput, teacher_out: SegOutput, target: Tensor | None) -> Tensor:
        ((z_s, z_t),) = paired(student_out.logits, teacher_out.logits, limit=1)
        rows_s, rows_t, gt = labelled_rows(z_s, z_t, labels_at(target, z_s.shape[2:]))
        m = rows_s.shape[0]
        if m == 0:
            return 0.0 * z_s.sum()
        target_term = -(F.softmax(rows_t, dim=1)[gt] * F.log_softmax(rows_s, dim=1)[gt]).mean()
        rest_s = rows_s[~gt].reshape(m, -1) / self.temp
        rest_t = rows_t[~gt].reshape(m, -1) / self.temp
        cross = (F.softmax(rest_t, dim=1) * F.log_softmax(rest_s, dim=1)).sum(dim=1).mean()
        return target_term - self.gamma * self.temp**2 * cross
