"""Intra-class feature variation distillation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import Tensor

from kd_methods._align import labels_at, paired, require_features
from kd_methods._base import KDMethod
from kd_methods._ops import one_hot_voxels, region_means, voxel_expand
from kd_methods._registry import register_kd_method

if TYPE_CHECKING:
    from models import SegOutput


def intra_class_variation(features: Tensor, one_hot: Tensor) -> Tensor:
    """M(v) = cos(f_v, c_{y_v}) [B, N], c_k the per-sample class prototype; 0 at ignore-labelled voxels."""
    prototypes, _ = region_means(features, one_hot)
    centres = voxel_expand(prototypes, one_hot)
    return F.cosine_similarity(features.flatten(2), centres, dim=1)


@register_kd_method(
    "ifvd",
    description="IFVD: match each voxel's cosine to its class prototype (needs labels)",
    reference="Wang et al., ECCV 2020, 'Intra-class Feature Variation Distillation for Semantic Segmentation'; "
    "https://github.com/YukangWang/IFVD",
)
class IntraClassFeatureVariation(KDMethod):
    """L = weight * (1/(B N)) sum_{b,v} (M_S(v) - M_T(v))^2, M(v) = cos(f_v, c_{y_v}), c_k = mean of f over class k.

    | hyper-parameter | default | source                                            |
    |-----------------|---------|---------------------------------------------------|
    | weight          | 200     | official `options.py` lambda_ifv (CIRKD uses 20)  |

    Uses the full-resolution decoder feature of each network and the labels resampled (nearest) to it; the teacher
    feature is resampled trilinearly to the student's size. Prototypes per sample with one-hot products (O(K C)
    memory) instead of the official per-class B x C x D x H x W masks. Labels outside [0, K) (ignore labels) have
    M = 0 in both networks: they contribute 0 but count in the mean, like the official code's cos = 1 in both.
    Classes absent from a sample are skipped implicitly.

    The paper's full objective also has pixel-wise KD (weight 10, tau 1) and an adversarial term; here only the IFV
    term, compose with ``+kd`` (e.g. ``create_kd_method("ifvd+kd", ..., kd={"weight": 10})``) for the former. The
    adversarial term is omitted for the reason given in ``kd_methods.skd``. No adapter (cosines have no channel dim).
    0 at equality; invariant to positive per-sample scaling of either feature.
    """

    needs_target = True

    def __init__(
        self,
        student_channels: list[int],
        teacher_channels: list[int],
        num_classes: int,
        weight: float = 200.0,
    ):
        """Build the loss for networks with the given feature channels and class count.

        Args:
            weight: factor on the intra-class feature variation loss (lambda_ifv).
        """
        super().__init__(student_channels, teacher_channels, num_classes, weight)

    def compute(self, student_out: SegOutput, teacher_out: SegOutput, target: Tensor | None) -> Tensor:
        require_features(student_out.features, teacher_out.features, "ifvd")
        ((f_s, f_t),) = paired(student_out.features, teacher_out.features, limit=1)
        one_hot = one_hot_voxels(labels_at(target, f_s.shape[2:]), self.num_classes, f_s.dtype)
        return (intra_class_variation(f_s, one_hot) - intra_class_variation(f_t, one_hot)).pow(2).mean()
