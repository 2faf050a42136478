"""FitNets hints: regress the teacher's decoder feature from the student's through a 1x1x1 adapter."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from kd_methods._adapters import ScaleAdapters
from kd_methods._align import paired, require_features
from kd_methods._base import KDMethod
from kd_methods._errors import KDMethodError
from kd_methods._registry import register_kd_method

if TYPE_CHECKING:
    from models import SegOutput


@register_kd_method(
    "fitnet",
    description="FitNets hints: MSE between a 1x1x1-adapted student feature and the teacher feature",
    reference="Romero et al., ICLR 2015, 'FitNets: Hints for Thin Deep Nets'; CIRKD losses/fitnet.py",
)
class FitNet(KDMethod):
    """L = weight * sum_s mean_{b,c,v} (r_s(f_S) - f_T)^2, r_s a trainable bias-free Conv3d(C_S, C_T, 1).

    | hyper-parameter | default | source                                                                     |
    |-----------------|---------|----------------------------------------------------------------------------|
    | weight          | 10      | CIRKD (`losses/fitnet.py`) and mmrazor FitNets configs                     |
    | num_scales      | 1       | one hint layer as in the paper; CIRKD hints the final feature (scale 0)    |

    The paper's two-stage protocol (hint pre-training, then KD with annealed weight) is replaced by one joint stage,
    as in every segmentation port; add ``+kd`` for the KD term. The adapter is always present (it is the paper's
    regressor) and is a submodule, so it is trained with the student; when C_S = C_T it starts as the identity,
    so L = 0 when f_S = f_T. The teacher feature is resampled trilinearly to the student's size. Unlike mmrazor's
    ``L2Loss(normalize=True)`` the loss is not scale-invariant, as in the paper.
    """

    needs_target = False

    def __init__(
        self,
        student_channels: list[int],
        teacher_channels: list[int],
        num_classes: int,
        weight: float = 10.0,
        num_scales: int = 1,
    ):
        """Build the loss for networks with the given feature channels and class count.

        Args:
            weight: factor on the hint loss.
            num_scales: decoder scales hinted, full resolution first. [paper: 1 (one hint layer)]
        """
        super().__init__(student_channels, teacher_channels, num_classes, weight)
        if num_scales < 1:
            raise KDMethodError(f"fitnet: num_scales must be >= 1, got {num_scales}")
        self.adapters = ScaleAdapters(student_channels, teacher_channels, num_scales, always=True)
        if len(self.adapters) == 0:
            raise KDMethodError("fitnet needs student_channels and teacher_channels (decoder feature channels)")

    def compute(self, student_out: SegOutput, teacher_out: SegOutput, target: Tensor | None) -> Tensor:
        require_features(student_out.features, teacher_out.features, "fitnet")
        total = 0.0
        for scale, (f_s, f_t) in enumerate(paired(student_out.features, teacher_out.features, len(self.adapters))):
            total = total + (self.adapters(f_s, scale) - f_t).pow(2).mean()
        return total
