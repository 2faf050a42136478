"""EMKD: prediction-map, importance-map and region-affinity distillation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from kd_methods._align import common_scales, labels_at, paired, require_features
from kd_methods._base import KDMethod
from kd_methods._errors import KDMethodError
from kd_methods._ops import one_hot_voxels, region_means, spatial_attention, voxel_kl
from kd_methods._registry import register_kd_method

if TYPE_CHECKING:
    from models import SegOutput


def region_affinity_gap(f_s: Tensor, f_t: Tensor, one_hot: Tensor) -> Tensor:
    """Mean over samples and class pairs i < j present in that sample of (cos(r_i, r_j)_S - cos(r_i, r_j)_T)^2."""
    r_s, counts = region_means(f_s, one_hot)
    r_t, _ = region_means(f_t, one_hot)
    cos_s = torch.bmm(F.normalize(r_s, dim=2), F.normalize(r_s, dim=2).transpose(1, 2))
    cos_t = torch.bmm(F.normalize(r_t, dim=2), F.normalize(r_t, dim=2).transpose(1, 2))
    present = counts > 0
    k = counts.shape[1]
    upper = torch.ones(k, k, dtype=torch.bool, device=counts.device).triu(diagonal=1)
    pairs = (present[:, :, None] & present[:, None, :] & upper).to(cos_s.dtype)
    return ((cos_s - cos_t).pow(2) * pairs).sum() / pairs.sum().clamp_min(1.0)


@register_kd_method(
    "emkd",
    description="EMKD: Hinton KD (PMD) + p=4 attention maps (IMD) + class-region affinity (RAD, needs labels)",
    reference="Qin et al., IEEE TMI 2021, arXiv:2108.09987; https://github.com/EagleMIT/EMKD",
)
class EMKD(KDMethod):
    """L = weight * (pmd_weight * PMD + imd_weight * IMD + rad_weight * RAD).

    - PMD: Hinton KD on the full-resolution logits, tau^2 * per-voxel mean KL at temperature tau.
    - IMD: attention maps A = normalize_N(mean_c f^4) per sample; (1/B) sum_b sum_v (A_S - A_T)^2 (sum over positions).
    - RAD: region means r_k = sum_v m_kv f_v / sum_v m_kv from the labels; mean over samples and class pairs i < j
      present in the sample of (cos(r_i, r_j)_S - cos(r_i, r_j)_T)^2.

    | hyper-parameter | default | source                                    |
    |-----------------|---------|-------------------------------------------|
    | pmd_weight      | 0.1     | alpha, official `train_kd.py`             |
    | imd_weight      | 0.9     | beta_1                                    |
    | rad_weight      | 0.9     | beta_2                                    |
    | tau             | 4       | PMD temperature                           |
    | weight          | 1       | overall factor                            |

    Adaptations to the ``SegOutput`` contract and 3D:

    - EMKD compares one low- and one high-level **encoder** feature; ``SegOutput`` carries decoder features only, so
      IMD and RAD use the full-resolution decoder feature (``features[0]``) and the coarsest common scale
      (``features[n-1]``); with a single common scale, that one feature alone.
    - Official IMD resizes the student to the teacher's size; here the teacher is resampled (trilinear) to the
      student's, like every method in this package. Labels are resampled with ``nearest``.
    - RAD is binary (background vs foreground) in the paper; for K classes the class pairs present in each sample
      are **averaged** (ACF's 3D port sums them, which grows with K^2; both agree for two classes). Empty classes are
      skipped (the official background mean has no smoothing).

    No adapter (attention maps and region cosines have no channel dim). 0 at equality; IMD and RAD are invariant to
    positive per-sample scaling of the features.
    """

    needs_target = True

    def __init__(
        self,
        student_channels: list[int],
        teacher_channels: list[int],
        num_classes: int,
        pmd_weight: float = 0.1,
        imd_weight: float = 0.9,
        rad_weight: float = 0.9,
        tau: float = 4.0,
        weight: float = 1.0,
    ):
        """Build the loss for networks with the given feature channels and class count.

        Args:
            pmd_weight: factor on prediction-map distillation (Hinton KD, alpha).
            imd_weight: factor on importance-map distillation (attention maps, beta_1).
            rad_weight: factor on region-affinity distillation (beta_2).
            tau: temperature of the PMD term.
            weight: factor on the whole loss.
        """
        super().__init__(student_channels, teacher_channels, num_classes, weight)
        if tau <= 0:
            raise KDMethodError(f"emkd: tau must be positive, got {tau}")
        self.pmd_weight = float(pmd_weight)
        self.imd_weight = float(imd_weight)
        self.rad_weight = float(rad_weight)
        self.tau = float(tau)

    def extra_repr(self) -> str:
        return (
            f"weight={self.weight:g}, pmd_weight={self.pmd_weight:g}, imd_weight={self.imd_weight:g}, "
            f"rad_weight={self.rad_weight:g}, tau={self.tau:g}"
        )

    def compute(self, student_out: SegOutput, teacher_out: SegOutput, target: Tensor | None) -> Tensor:
        require_features(student_out.features, teacher_out.features, "emkd")
        ((z_s, z_t),) = paired(student_out.logits, teacher_out.logits, limit=1)
        pmd = self.tau**2 * voxel_kl(z_t, z_s, self.tau)
        last = common_scales(student_out.features, teacher_out.features) - 1
        scales = [0] if last == 0 else [0, last]
        feature_pairs = paired([student_out.features[i] for i in scales], [teacher_out.features[i] for i in scales])
        imd = 0.0
        rad = 0.0
        for f_s, f_t in feature_pairs:
            imd = imd + (spatial_attention(f_s, 4.0) - spatial_attention(f_t, 4.0)).pow(2).sum(dim=1).mean()
            one_hot = one_hot_voxels(labels_at(target, f_s.shape[2:]), self.num_classes, f_s.dtype)
            rad = rad + region_affinity_gap(f_s, f_t, one_hot)
        return self.pmd_weight * pmd + self.imd_weight * imd + self.rad_weight * rad
