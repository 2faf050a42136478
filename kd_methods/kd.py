"""Hinton knowledge distillation on the full-resolution logits."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from kd_methods._align import paired
from kd_methods._base import KDMethod
from kd_methods._errors import KDMethodError
from kd_methods._ops import voxel_kl
from kd_methods._registry import register_kd_method

if TYPE_CHECKING:
    from models import SegOutput


@register_kd_method(
    "kd",
    description="Hinton KD: temperature-softened per-voxel KL between full-resolution predictions",
    reference="Hinton, Vinyals, Dean, arXiv:1503.02531 (2015); CIRKD losses/kd.py",
)
class HintonKD(KDMethod):
    """L = weight * tau^2 * (1/(B N)) sum_{b,v} KL(softmax(z_T,v / tau) || softmax(z_S,v / tau)).

    | hyper-parameter | default | source                                                   |
    |-----------------|---------|----------------------------------------------------------|
    | tau             | 1       | CIRKD segmentation (`train_kd.py`); EMKD/AT use 4        |
    | weight          | 1       | CIRKD segmentation; official SKD/IFVD use 10 with /K     |

    Full-resolution logits only (``logits[0]``); the teacher's are resampled trilinearly to the student's size if
    they differ. Per-voxel mean KL (rows = voxels), so the value does not grow with the patch size; tau^2 keeps the
    gradient scale independent of tau: dL/dz_S = weight * tau * (p_S - p_T) / (B N). 0 at equality for any tau and
    invariant to adding a per-voxel constant to either side's logits.
    """

    needs_target = False

    def __init__(
        self,
        student_channels: list[int],
        teacher_channels: list[int],
        num_classes: int,
        tau: float = 1.0,
        weight: float = 1.0,
    ):
        """Build the loss for networks with the given feature channels and class count.

        Args:
            tau: softmax temperature (the loss is scaled by tau^2).
            weight: factor on the loss.
        """
        super().__init__(student_channels, teacher_channels, num_classes, weight)
        if tau <= 0:
            raise KDMethodError(f"kd: tau must be positive, got {tau}")
        self.tau = float(tau)

    def extra_repr(self) -> str:
        return f"weight={self.weight:g}, tau={self.tau:g}"

    def compute(self, student_out: SegOutput, teacher_out: SegOutput, target: Tensor | None) -> Tensor:
        ((z_s, z_t),) = paired(student_out.logits, teacher_out.logits, limit=1)
        return self.tau**2 * voxel_kl(z_t, z_s, self.tau)
