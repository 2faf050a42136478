"""Base class holding the contract every registered KD method follows."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from kd_methods._errors import KDMethodError

if TYPE_CHECKING:
    from models import SegOutput


class KDMethod(nn.Module, ABC):
    """A distillation loss ``method(student_out, teacher_out, target=None) -> scalar``.

    ``forward`` validates the inputs, switches autocast off (Gram matrices, spatial softmaxes and sums over ~10^6 voxels
    overflow or underflow in fp16) and returns ``weight * compute(...)``; subclasses implement :meth:`compute` in
    fp32 and must ``.detach()`` every teacher tensor (the alignment helpers in ``kd_methods._align`` do).

    Class attributes read by the trainer: ``seg_loss_weight`` (factor on the supervised Dice+CE loss when this
    method is used) and ``needs_target`` (whether ``target`` labels are required).
    """

    seg_loss_weight: float = 1.0
    needs_target: bool = False

    def __init__(self, student_channels: list[int], teacher_channels: list[int], num_classes: int, weight: float):
        super().__init__()
        if num_classes < 2:
            raise KDMethodError(f"{type(self).__name__}: num_classes must be >= 2, got {num_classes}")
        self.student_channels = list(student_channels)
        self.teacher_channels = list(teacher_channels)
        self.num_classes = int(num_classes)
        self.weight = float(weight)

    def forward(self, student_out: SegOutput, teacher_out: SegOutput, target: Tensor | None = None) -> Tensor:
        self._check(student_out, teacher_out, target)
        with torch.autocast(device_type=student_out.main.device.type, enabled=False):
            return self.weight * self.compute(student_out, teacher_out, target)

    @abstractmethod
    def compute(self, student_out: SegOutput, teacher_out: SegOutput, target: Tensor | None) -> Tensor:
        """The unweighted loss, in fp32."""

    def extra_repr(self) -> str:
        return f"weight={self.weight:g}"

    def _check(self, student_out: SegOutput, teacher_out: SegOutput, target: Tensor | None) -> None:
        name = type(self).__name__
        for side, out in (("student", student_out), ("teacher", teacher_out)):
            logits = out.main
            if logits.dim() != 5:
                raise KDMethodError(f"{name}: {side} logits must be [B, K, D, H, W], got shape {tuple(logits.shape)}")
            if logits.shape[1] != self.num_classes:
                raise KDMethodError(
                    f"{name}: {side} logits have {logits.shape[1]} classes, the method was built for {self.num_classes}"
                )
        if student_out.main.shape[0] != teacher_out.main.shape[0]:
            raise KDMethodError(
                f"{name}: student batch {student_out.main.shape[0]} != teacher batch {teacher_out.main.shape[0]}"
            )
        if not self.needs_target:
            return
        if target is None:
            raise KDMethodError(f"{name} needs the integer label map `target` ([B, D, H, W]), got None")
        want = (student_out.main.shape[0], *student_out.main.shape[2:])
        if tuple(target.shape) != want:
            raise KDMethodError(
                f"{name}: target must be [B, D, H, W] = {list(want)} (the student's full-resolution logits), "
                f"got shape {list(target.shape)}"
            )
