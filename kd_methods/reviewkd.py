"""ReviewKD: attention-based fusion of the student's decoder features, matched with the hierarchical context loss."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kd_methods._align import at_least_fp32, paired, require_features
from kd_methods._base import KDMethod
from kd_methods._errors import KDMethodError
from kd_methods._registry import register_kd_method

if TYPE_CHECKING:
    from models import SegOutput

HCL_LEVELS = (4, 2, 1)


def hierarchical_context_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """HCL: MSE of the features plus MSEs of their adaptive average pools to l^3 cells, l = 4, 2, 1 (a level is
    skipped when l is not below the smallest side), weighted 1, 1/2, 1/4, 1/8 and divided by the weights' sum."""
    loss = F.mse_loss(student, teacher)
    share, total = 1.0, 1.0
    for level in HCL_LEVELS:
        if level >= min(student.shape[2:]):
            continue
        share /= 2.0
        pooled = F.mse_loss(F.adaptive_avg_pool3d(student, level), F.adaptive_avg_pool3d(teacher, level))
        loss = loss + share * pooled
        total += share
    return loss / total


class AttentionBasedFusion(nn.Module):
    """ABF: 1x1x1 conv + BN to ``mid`` channels; fused with the coarser scale's residual by a 2-channel sigmoid
    attention (where ``fuse``); 3x3x3 conv + BN to the teacher's channels. Returns (output, residual)."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, fuse: bool):
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv3d(in_channels, mid_channels, 1, bias=False), nn.BatchNorm3d(mid_channels))
        self.expand = nn.Sequential(
            nn.Conv3d(mid_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm3d(out_channels)
        )
        self.attention = nn.Sequential(nn.Conv3d(2 * mid_channels, 2, 1), nn.Sigmoid()) if fuse else None
        for conv in (self.reduce[0], self.expand[0]):
            nn.init.kaiming_uniform_(conv.weight, a=1)  # as the official ABF

    def forward(self, x: Tensor, residual: Tensor | None) -> tuple[Tensor, Tensor]:
        x = self.reduce(x)
        if self.attention is not None and residual is not None:
            y = F.interpolate(residual, size=x.shape[2:], mode="nearest")
            z = self.attention(torch.cat([x, y], dim=1))
            x = x * z[:, :1] + y * z[:, 1:]
        return self.expand(x), x


@register_kd_method(
    "reviewkd",
    description="ReviewKD: attention-fused student features (coarse to fine) matched by the hierarchical context loss",
    reference="Chen et al., CVPR 2021, 'Distilling Knowledge via Knowledge Review', arXiv:2104.09044; "
    "https://github.com/dvlab-research/ReviewKD; HCL as in 605671435/ACF-BCKD razor/models/losses/hcl.py",
)
class ReviewKD(KDMethod):
    """L = weight * sum_s HCL(ABF_s(f_S,s, r_{s+1}), f_T,s) over the paired decoder scales s.

    The review mechanism: starting from the coarsest paired scale, each ABF reduces the student feature to
    ``mid_channels``, fuses it with the (upsampled, nearest) residual of the next coarser scale through a learned
    two-way attention, and maps it to the teacher's channels; each output is compared with the teacher feature of
    the same scale by HCL. Decoder features replace ReviewKD's encoder stages (``SegOutput`` carries decoder
    features only); the teacher's are resampled trilinearly to the student's size (ReviewKD resizes the student's).

    | hyper-parameter | default      | source                                                          |
    |-----------------|--------------|-----------------------------------------------------------------|
    | mid_channels    | 64           | official CIFAR builds                                           |
    | num_scales      | None (= all) | paired decoder scales, full resolution first                     |
    | weight          | 1            | HCL `loss_weight` of the ACF port                               |

    HCL in 3D: pools to l x l x l cells, a level skipped when l is not below the smallest side (official: the
    height). The official linear warm-up of the loss weight over the first epochs is not applied. The ABFs are
    trained with the student (a submodule), so the loss is not 0 at equality: the fused features only approach the
    teacher's as the ABFs learn.
    """

    needs_target = False

    def __init__(
        self,
        student_channels: list[int],
        teacher_channels: list[int],
        num_classes: int,
        mid_channels: int = 64,
        num_scales: int | None = None,
        weight: float = 1.0,
    ):
        """Build the loss for networks with the given feature channels and class count.

        Args:
            mid_channels: channels of the fused features inside each ABF.
            num_scales: decoder scales reviewed, full resolution first; None: every paired scale.
            weight: factor on the summed HCL.
        """
        super().__init__(student_channels, teacher_channels, num_classes, weight)
        if mid_channels < 1:
            raise KDMethodError(f"reviewkd: mid_channels must be >= 1, got {mid_channels}")
        n = min(len(student_channels), len(teacher_channels))
        if num_scales is not None:
            if num_scales < 1:
                raise KDMethodError(f"reviewkd: num_scales must be >= 1 or None, got {num_scales}")
            n = min(n, num_scales)
        if n == 0:
            raise KDMethodError("reviewkd needs student_channels and teacher_channels")
        self.mid_channels, self.num_scales = int(mid_channels), n
        self.fusions = nn.ModuleList(
            AttentionBasedFusion(student_channels[i], mid_channels, teacher_channels[i], fuse=i < n - 1)
            for i in range(n)
        )

    def extra_repr(self) -> str:
        return f"weight={self.weight:g}, scales={len(self.fusions)}"

    def compute(self, student_out: SegOutput, teacher_out: SegOutput, target: Tensor | None) -> Tensor:
        require_features(student_out.features, teacher_out.features, "reviewkd")
        pairs = paired(student_out.features, teacher_out.features, len(self.fusions))
        residual = None
        total = 0.0
        for scale in reversed(range(len(pairs))):
            f_s, f_t = pairs[scale]
            fusion = self.fusions[scale]
            expected = fusion.reduce[0].in_channels
            if f_s.shape[1] != expected:
                raise KDMethodError(
                    f"reviewkd: student feature at scale {scale} has {f_s.shape[1]} channels, but the method was "
                    f"built with student_channels[{scale}] = {expected}"
                )
            out, residual = fusion(f_s.to(fusion.reduce[0].weight.dtype), residual)
            total = total + hierarchical_context_loss(at_least_fp32(out), f_t)
        return total
