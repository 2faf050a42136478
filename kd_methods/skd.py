"""Structured KD: pixel-wise KL plus pair-wise similarity of pooled feature nodes (no adversarial term)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from kd_methods._align import at_least_fp32, paired, require_features
from kd_methods._base import KDMethod
from kd_methods._errors import KDMethodError
from kd_methods._ops import voxel_kl
from kd_methods._registry import register_kd_method

if TYPE_CHECKING:
    from models import SegOutput


def node_similarity(features: Tensor, nodes_per_axis: int) -> Tensor:
    """Cosine similarity [B, M, M] between the M = nodes_per_axis^3 max-pooled feature nodes of each sample."""
    pooled = F.adaptive_max_pool3d(features, nodes_per_axis).flatten(2)
    unit = F.normalize(pooled, dim=1)
    return torch.bmm(unit.transpose(1, 2), unit)


@register_kd_method(
    "skd",
    description="Structured KD: pixel-wise KL + pair-wise node similarity (holistic adversarial term omitted)",
    reference="Liu et al., CVPR 2019 / TPAMI 2020; https://github.com/irfanICMLL/structure_knowledge_distillation",
)
class StructuredKD(KDMethod):
    """L = weight * (pixel_weight * L_pi + pair_weight * L_pa).

    - L_pi = per-voxel mean KL(softmax(z_T) || softmax(z_S)) on the full-resolution logits, tau = 1.
    - L_pa = (1/B) sum_b (1/M^2) sum_{ij} (a^S_ij - a^T_ij)^2 on the full-resolution decoder feature (the one feeding
      the classifier), a_ij = cosine between nodes i and j after max pooling to ``nodes_per_axis``^3 = M nodes.

    | hyper-parameter | default | source                                                                   |
    |-----------------|---------|--------------------------------------------------------------------------|
    | pixel_weight    | 10      | official `train_options.py` lambda_pi                                   |
    | pair_weight     | 1       | official lambda_pa (0.5 in `run_train_val.sh`)                          |
    | nodes_per_axis  | 2       | official pooling to 2 x 2 nodes in 2D -> 2 x 2 x 2 = 8 nodes in 3D       |
    | weight          | 1       | overall factor                                                          |

    Differences from the paper and official code:

    - **No holistic (adversarial) term**: it needs a conditional 3D WGAN-GP discriminator trained alongside; 3D ports
      (ACF) drop it too.
    - Pixel-wise term as KL, not the official cross-entropy summed over the batch: KL is 0 at equality (CE equals the
      teacher entropy there) and has the same gradient up to the official 1/B.
    - Nodes by adaptive max pooling to a fixed grid (official: kernel = stride = floor(size/2) with ceil_mode, which
      gives 3 nodes on an odd axis); both networks therefore pool to the same grid and the teacher feature is not
      resampled. The logits' teacher side is resampled trilinearly to the student's size when they differ.
    - The feature norm is not detached (the official code detaches it; CIRKD's port does not).

    C_S != C_T is fine (similarities are M x M). 0 at equality; L_pa invariant to positive per-sample scaling.
    """

    needs_target = False

    def __init__(
        self,
        student_channels: list[int],
        teacher_channels: list[int],
        num_classes: int,
        pixel_weight: float = 10.0,
        pair_weight: float = 1.0,
        nodes_per_axis: int = 2,
        weight: float = 1.0,
    ):
        """Build the loss for networks with the given feature channels and class count.

        Args:
            pixel_weight: factor on the pixel-wise KL term (lambda_pi).
            pair_weight: factor on the pair-wise similarity term (lambda_pa).
            nodes_per_axis: the feature is max-pooled to this many nodes along each axis.
            weight: factor on the whole loss.
        """
        super().__init__(student_channels, teacher_channels, num_classes, weight)
        if nodes_per_axis < 1:
            raise KDMethodError(f"skd: nodes_per_axis must be >= 1, got {nodes_per_axis}")
        self.pixel_weight = float(pixel_weight)
        self.pair_weight = float(pair_weight)
        self.nodes_per_axis = int(nodes_per_axis)

    def extra_repr(self) -> str:
        return (
            f"weight={self.weight:g}, pixel_weight={self.pixel_weight:g}, pair_weight={self.pair_weight:g}, "
            f"nodes_per_axis={self.nodes_per_axis}"
        )

    def compute(self, student_out: SegOutput, teacher_out: SegOutput, target: Tensor | None) -> Tensor:
        require_features(student_out.features, teacher_out.features, "skd")
        ((z_s, z_t),) = paired(student_out.logits, teacher_out.logits, limit=1)
        f_s = at_least_fp32(student_out.features[0])
        f_t = at_least_fp32(teacher_out.features[0].detach())
        a_s = node_similarity(f_s, self.nodes_per_axis)
        a_t = node_similarity(f_t, self.nodes_per_axis)
        return self.pixel_weight * voxel_kl(z_t, z_s) + self.pair_weight * (a_s - a_t).pow(2).mean()
