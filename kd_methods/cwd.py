"""Channel-wise distillation: KL between per-channel spatial distributions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import Tensor

from kd_methods._adapters import ScaleAdapters
from kd_methods._align import paired, require_features
from kd_methods._base import KDMethod
from kd_methods._errors import KDMethodError
from kd_methods._registry import register_kd_method

if TYPE_CHECKING:
    from models import SegOutput

DEFAULT_WEIGHTS = {"logits": 3.0, "features": 50.0}


def channel_wise_kl(student: Tensor, teacher: Tensor, tau: float) -> Tensor:
    """tau^2 / (B C) * sum_{b,c} KL(phi_c(y_T) || phi_c(y_S)), phi_c = softmax over the voxels of channel c."""
    log_phi_s = F.log_softmax(student.flatten(2) / tau, dim=2)
    log_phi_t = F.log_softmax(teacher.flatten(2) / tau, dim=2)
    kl = F.kl_div(log_phi_s, log_phi_t, reduction="none", log_target=True).sum(dim=2)
    return tau**2 * kl.mean()


@register_kd_method(
    "cwd",
    description="Channel-wise distillation: KL between per-channel spatial softmax maps (logits or features)",
    reference="Shu et al., ICCV 2021, arXiv:2011.13256; https://github.com/irfanICMLL/TorchDistiller SemSeg-distill",
)
class ChannelWiseDistillation(KDMethod):
    """L = weight * tau^2 / (B C) * sum_{b,c} sum_v phi_c(y_T)_v (log phi_c(y_T)_v - log phi_c(y_S)_v).

    | hyper-parameter | default                          | source                                                   |
    |-----------------|----------------------------------|----------------------------------------------------------|
    | on              | "logits"                         | official `exp_cwd.sh channel kl 3 4` distils score maps  |
    | tau             | 4                                | official, CIRKD                                          |
    | weight          | None -> 3 (logits), 50 (features) | official (logits), CIRKD (features)                     |

    ``on="logits"``: full-resolution logits (same K on both sides, no adapter). ``on="features"``: the full-resolution
    decoder features, through a bias-free 1x1x1 Conv3d adapter on the student when C_S != C_T (CIRKD's choice; a
    submodule, trained with the student). The teacher tensor is resampled trilinearly to the student's size.

    The voxel sum is not divided by N: a KL between two spatial distributions does not grow with N. 0 at equality,
    invariant to adding a per-(b, c) constant; not invariant to positive rescaling (it acts as a temperature).
    """

    needs_target = False

    def __init__(
        self,
        student_channels: list[int],
        teacher_channels: list[int],
        num_classes: int,
        on: str = "logits",
        tau: float = 4.0,
        weight: float | None = None,
    ):
        """Build the loss for networks with the given feature channels and class count.

        Args:
            on: what is distilled channel by channel: "logits" (score maps) or "features" (decoder features).
            tau: temperature of the spatial softmax.
            weight: factor on the loss; None: 3 on logits, 50 on features.
        """
        if on not in DEFAULT_WEIGHTS:
            raise KDMethodError(f"cwd: `on` must be one of {', '.join(DEFAULT_WEIGHTS)}, got {on!r}")
        weight = DEFAULT_WEIGHTS[on] if weight is None else weight
        super().__init__(student_channels, teacher_channels, num_classes, weight)
        if tau <= 0:
            raise KDMethodError(f"cwd: tau must be positive, got {tau}")
        self.on = on
        self.tau = float(tau)
        if on == "features":
            self.adapters = ScaleAdapters(student_channels, teacher_channels, 1, always=False)
            if len(self.adapters) == 0:
                raise KDMethodError("cwd on features needs student_channels and teacher_channels")

    def extra_repr(self) -> str:
        return f"weight={self.weight:g}, on={self.on!r}, tau={self.tau:g}"

    def compute(self, student_out: SegOutput, teacher_out: SegOutput, target: Tensor | None) -> Tensor:
        if self.on == "logits":
            ((y_s, y_t),) = paired(student_out.logits, teacher_out.logits, limit=1)
        else:
            require_features(student_out.features, teacher_out.features, "cwd")
            ((f_s, y_t),) = paired(student_out.features, teacher_out.features, limit=1)
            y_s = self.adapters(f_s, 0)
        return channel_wise_kl(y_s, y_t, self.tau)
