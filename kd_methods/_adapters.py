"""1x1x1 convolutions mapping student feature channels onto the teacher's, trained with the student."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kd_methods._align import at_least_fp32
from kd_methods._errors import KDMethodError


def channel_adapter(in_channels: int, out_channels: int, *, always: bool) -> nn.Module:
    """A bias-free ``Conv3d(in, out, 1)`` (CIRKD's choice), or ``nn.Identity`` when channels match and not ``always``.

    A square adapter starts as the identity, so the loss is exactly 0 when the student already equals the teacher
    (a randomly initialised regressor would make it positive from step 0).
    """
    if in_channels == out_channels and not always:
        return nn.Identity()
    conv = nn.Conv3d(in_channels, out_channels, kernel_size=1, bias=False)
    if in_channels == out_channels:
        with torch.no_grad():
            conv.weight.copy_(torch.eye(out_channels).view(out_channels, in_channels, 1, 1, 1))
    return conv


class ScaleAdapters(nn.Module):
    """One channel adapter per paired scale, full resolution first (student_channels[i] -> teacher_channels[i])."""

    def __init__(self, student_channels: list[int], teacher_channels: list[int], num_scales: int, *, always: bool):
        super().__init__()
        n = min(len(student_channels), len(teacher_channels), num_scales)
        self.student_channels = list(student_channels[:n])
        self.adapters = nn.ModuleList(
            channel_adapter(s, t, always=always) for s, t in zip(student_channels[:n], teacher_channels[:n])
        )

    def __len__(self) -> int:
        return len(self.adapters)

    def forward(self, features: Tensor, scale: int) -> Tensor:
        """Map the student feature of ``scale`` to the teacher's channel count, in fp32."""
        expected = self.student_channels[scale]
        if features.shape[1] != expected:
            raise KDMethodError(
                f"student feature at scale {scale} has {features.shape[1]} channels, but the method was built with "
                f"student_channels[{scale}] = {expected}"
            )
        adapter = self.adapters[scale]
        if isinstance(adapter, nn.Conv3d):
            return at_least_fp32(adapter(features.to(adapter.weight.dtype)))
        return features
