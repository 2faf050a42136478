"""LCOV-Net (Zhao et al., IEEE TMI 2023; ISBI 2021) as the official code builds it.

Blocks follow HiLab-git/LCOVNet-and-KD ``pymic/net/net3d/lcovnet.py`` (kernel sizes in PyTorch [D, H, W] order,
all convolutions with bias). Fixes of the official code's defects (``docs/lcovnet-paper.md`` §5):
the channel list and input channels are honoured (defect Q6, hard-coded ``m=1`` and ``ft_chns``), and the network never
returns None: with deep supervision off it returns the full-resolution logits (Q6).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from models._blocks import decode, encode, heads_output, resolve_channels
from models._output import SegOutput
from models._registry import register_model


def _conv_bn_relu6(cin: int, cout: int, kernel: tuple[int, int, int], padding: tuple[int, int, int], groups: int = 1):
    return [nn.Conv3d(cin, cout, kernel, padding=padding, groups=groups), nn.BatchNorm3d(cout), nn.ReLU6(inplace=True)]


class LACBH(nn.Module):
    """LACB-H: (1,1,3) conv stem; full (3,3,1) conv branch; pooled attention gate on the stem output.

    Output ``F'' + sigmoid(att(F')) * F'`` where ``F'`` is the stem output (the gate multiplies the stem, as drawn).
    The attention branch halves the resolution (AvgPool k4 s2 p1) so each input side must be even.
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(*_conv_bn_relu6(in_channels, out_channels, (1, 1, 3), (0, 0, 1)))
        self.conv2_1 = nn.Sequential(
            *_conv_bn_relu6(out_channels, out_channels, (3, 3, 1), (1, 1, 0)), nn.Dropout(dropout)
        )
        self.conv2_2 = nn.Sequential(
            nn.AvgPool3d(kernel_size=4, stride=2, padding=1),
            nn.Conv3d(out_channels, out_channels, kernel_size=1),
            nn.BatchNorm3d(out_channels),
            nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        return self.conv2_1(x) + torch.sigmoid(self.conv2_2(x)) * x


class LACBL(nn.Module):
    """LACB-L (bottleneck): depthwise (3,3,1) branch and a full-resolution gate.

    As in the official code, ReLU6 precedes the sigmoid, so the gate lies in [0.5, 1); kept for fidelity.
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(*_conv_bn_relu6(in_channels, out_channels, (1, 1, 3), (0, 0, 1)))
        self.conv2_1 = nn.Sequential(
            *_conv_bn_relu6(out_channels, out_channels, (3, 3, 1), (1, 1, 0), groups=out_channels), nn.Dropout(dropout)
        )
        self.conv2_2 = nn.Sequential(
            *_conv_bn_relu6(out_channels, out_channels, (1, 1, 1), (0, 0, 0)), nn.Dropout(dropout)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        return self.conv2_1(x) + torch.sigmoid(self.conv2_2(x)) * x


class UpBlock(nn.Module):
    """1x1x1 conv + BN + ReLU6 + Dropout, then trilinear x2 up-sampling."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.conv = nn.Sequential(*_conv_bn_relu6(in_channels, out_channels, (1, 1, 1), (0, 0, 0)), nn.Dropout(dropout))
        self.up = nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.conv(x))


class LCOVNet(nn.Module):
    """Five-level LCOV-Net with four 1x1x1 deep-supervision heads (full, 1/2, 1/4, 1/8 resolution)."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 17,
        channels: Sequence[int] = (32, 64, 128, 256, 256),
        dropout: float = 0.2,
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        c = list(channels)
        self.deep_supervision = deep_supervision
        self.pool = nn.MaxPool3d(2, 2)
        self.encoders = nn.ModuleList(
            [LACBH(in_channels, c[0], dropout)] + [LACBH(c[i - 1], c[i], dropout) for i in range(1, 4)]
        )
        self.bottleneck = LACBL(c[3], c[4], dropout)
        # decoder from coarse (1/8) to fine (full resolution)
        self.ups = nn.ModuleList([UpBlock(c[4], c[3], dropout)] + [UpBlock(c[i], c[i - 1], dropout) for i in (3, 2, 1)])
        self.decoders = nn.ModuleList([LACBH(2 * c[i], c[i], dropout) for i in (3, 2, 1, 0)])
        self.heads = nn.ModuleList([nn.Conv3d(c[i], num_classes, kernel_size=1) for i in (3, 2, 1, 0)])
        self.feature_channels = [c[0], c[1], c[2], c[3]]

    def forward(self, x: Tensor) -> SegOutput:
        skips = encode(x, self.encoders, self.pool)
        features = decode(self.bottleneck(self.pool(skips[-1])), skips, self.ups, self.decoders)
        return heads_output(self.heads[::-1], features, self.deep_supervision)


@register_model(
    "lcovnet",
    description="LCOV-Net: lightweight attention-based conv blocks (LACB-H/L), 2.79 M params at 17 classes",
    reference="Zhao et al., IEEE TMI 2023, doi:10.1109/TMI.2023.3262680; github.com/HiLab-git/LCOVNet-and-KD",
    default_patch=(64, 128, 128),
    stride=16,
)
def lcovnet(
    in_channels: int = 1,
    num_classes: int = 17,
    channels: Sequence[int] | None = None,
    base_channels: int | None = None,
    dropout: float = 0.2,
    deep_supervision: bool = True,
) -> LCOVNet:
    """LCOV-Net as the official code builds it.

    Args:
        channels: widths of the five levels, default [32,64,128,256,256] (official code).
        base_channels: width of the first level, the others 2, 4, 8 and 8 times it (give channels or base_channels, not
            both).
        dropout: dropout rate of every block (official code).
        deep_supervision: also return the coarser decoder heads' logits and features (deep supervision; the
            multi-scale KD methods need them).
    """
    chans = resolve_channels(channels, base_channels, (32, 64, 128, 256, 256), (1, 2, 4, 8, 8))
    return LCOVNet(in_channels, num_classes, chans, dropout, deep_supervision)
