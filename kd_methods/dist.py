"""DIST: inter- and intra-class Pearson correlation between soft predictions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import Tensor

from kd_methods._align import paired
from kd_methods._base import KDMethod
from kd_methods._errors import KDMethodError
from kd_methods._registry import register_kd_method

if TYPE_CHECKING:
    from models import SegOutput


def pearson(a: Tensor, b: Tensor, dim: int, eps: float = 1e-8) -> Tensor:
    """Pearson correlation along ``dim``, with the official code's eps in the denominator."""
    a = a - a.mean(dim=dim, keepdim=True)
    b = b - b.mean(dim=dim, keepdim=True)
    return (a * b).sum(dim=dim) / (a.norm(dim=dim) * b.norm(dim=dim) + eps)


@register_kd_method(
    "dist",
    description="DIST: 1 - Pearson correlation of soft predictions across classes (inter) and voxels (intra)",
    reference="Huang et al., NeurIPS 2022, 'Knowledge Distillation from A Stronger Teacher'; "
    "https://github.com/hunto/DIST_KD segmentation/losses/dist_kd.py",
)
class DIST(KDMethod):
    """L = weight * tau^2 * (beta * inter + gamma * intra), Y = softmax(z / tau) as (B N) x K rows.

    inter = 1 - mean over voxels of rho(Y_S[v, :], Y_T[v, :]);
    intra = 1 - mean over classes of rho(Y_S[:, k], Y_T[:, k]) over all B N voxels of the batch.
    Classes are moved last before reshaping (a bare ``.view(-1, K)`` would mix classes and voxels).

    | hyper-parameter | default | source                                                      |
    |-----------------|---------|-------------------------------------------------------------|
    | beta            | 1       | official segmentation `train_kd.py`                         |
    | gamma           | 1       | official segmentation                                       |
    | tau             | 1       | official segmentation (ACF 3D uses 4)                       |
    | weight          | 1       | official, main head (the official 0.4 x on the aux head has |
    |                 |         | no counterpart here: full-resolution logits only)           |

    Teacher logits are resampled trilinearly to the student's size when they differ. L lies in
    [0, 2 (beta + gamma) tau^2]; ~0 at equality (exactly 0 up to the Pearson eps), invariant to per-voxel logit
    shifts. With B = 1-3 the intra-class term is estimated from one small batch; a class absent from the batch gives
    a near-constant column whose correlation is governed by eps.
    """

    needs_target = False

    def __init__(
        self,
        student_channels: list[int],
        teacher_channels: list[int],
        num_classes: int,
        beta: float = 1.0,
        gamma: float = 1.0,
        tau: float = 1.0,
        weight: float = 1.0,
    ):
        """Build the loss for networks with the given feature channels and class count.

        Args:
            beta: factor on the inter-class (per-voxel) correlation term.
            gamma: factor on the intra-class (per-class) correlation term.
            tau: softmax temperature.
            weight: factor on the loss.
        """
        super().__init__(student_channels, teacher_channels, num_classes, weight)
        if tau <= 0:
            raise KDMethodError(f"dist: tau must be positive, got {tau}")
        self.beta = float(beta)
        self.gamma = float(gamma)
        self.tau = float(tau)

    def extra_repr(self) -> str:
        return f"weight={self.weight:g}, beta={self.beta:g}, gamma={self.gamma:g}, tau={self.tau:g}"

    def compute(self, student_out: SegOutput, teacher_out: SegOutput, target: Tensor | None) -> Tensor:
        ((z_s, z_t),) = paired(student_out.logits, teacher_out.logits, limit=1)
        k = z_s.shape[1]
        y_s = F.softmax(z_s / self.tau, dim=1).movedim(1, -1).reshape(-1, k)
        y_t = F.softmax(z_t / self.tau, dim=1).movedim(1, -1).reshape(-1, k)
        inter = 1.0 - pearson(y_s, y_t, dim=1).mean()
        intra = 1.0 - pearson(y_s, y_t, dim=0).mean()
        return self.tau**2 * (self.beta * inter + self.gamma * intra)
