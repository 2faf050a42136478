"""The LCOV-Net paper's heavy teacher: the authors' 5-level 3D U-Net.

Follows HiLab-git/LCOVNet-and-KD ``pymic/net/net3d/unet_kd.py::UNet_KD`` (= ``nnUNet/.../unet.py::UNet``): two
3x3x3 conv-BN-ReLU-Dropout(0.2) per level, max-pool down, 2x2x2 transposed-conv up (+BN, ReLU, Dropout),
channels [32, 64, 128, 256, 256], four 1x1x1 heads. Unlike the official teacher (``docs/lcovnet-paper.md``,
defect Q5) the decoder features feeding every head are returned, so feature-based distillation can use it.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from models._blocks import decode, encode, heads_output, resolve_channels
from models._output import SegOutput
from models._registry import register_model


def _conv_block(cin: int, cout: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, padding=1), nn.BatchNorm3d(cout), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Conv3d(cout, cout, 3, padding=1), nn.BatchNorm3d(cout), nn.ReLU(inplace=True), nn.Dropout(dropout),
    )  # fmt: skip


def _up_block(cin: int, cout: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose3d(cin, cout, kernel_size=2, stride=2),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
    )


class UNet3D(nn.Module):
    """Five-level 3D U-Net with four deep-supervision heads (full, 1/2, 1/4, 1/8)."""

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
        self.encoders = nn.ModuleList([_conv_block(in_channels, c[0], dropout)])
        self.encoders.extend(_conv_block(c[i - 1], c[i], dropout) for i in range(1, 5))
        self.ups = nn.ModuleList(
            [_up_block(c[4], c[3], dropout)] + [_up_block(c[i], c[i - 1], dropout) for i in (3, 2, 1)]
        )
        self.decoders = nn.ModuleList([_conv_block(2 * c[i], c[i], dropout) for i in (3, 2, 1, 0)])
        self.heads = nn.ModuleList([nn.Conv3d(c[i], num_classes, kernel_size=1) for i in (3, 2, 1, 0)])
        self.feature_channels = [c[0], c[1], c[2], c[3]]

    def forward(self, x: Tensor) -> SegOutput:
        skips = encode(x, self.encoders, self.pool)
        features = decode(skips.pop(), skips, self.ups, self.decoders)
        return heads_output(self.heads[::-1], features, self.deep_supervision)


@register_model(
    "unet3d",
    description="LCOV-Net paper's heavy teacher: 5-level 3D U-Net, BN+Dropout, 14.99 M params at 17 classes",
    reference="Zhao et al., IEEE TMI 2023; github.com/HiLab-git/LCOVNet-and-KD pymic/net/net3d/unet_kd.py",
    default_patch=(64, 128, 128),
    stride=16,
)
def unet3d(
    in_channels: int = 1,
    num_classes: int = 17,
    channels: Sequence[int] | None = None,
    base_channels: int | None = None,
    dropout: float = 0.2,
    deep_supervision: bool = True,
) -> UNet3D:
    """The LCOV-Net paper's teacher U-Net as the official code builds it.

    Args:
        channels: widths of the five levels, default [32,64,128,256,256] (official code).
        base_channels: width of the first level, the others 2, 4, 8 and 8 times it (give channels or base_channels, not
            both).
        dropout: dropout rate of every block (official code).
        deep_supervision: also return the coarser decoder heads' logits and features (deep supervision; the
            multi-scale KD methods need them).
    """
    chans = resolve_channels(channels, base_channels, (32, 64, 128, 256, 256), (1, 2, 4, 8, 8))
    return UNet3D(in_channels, num_classes, chans, dropout, deep_supervision)
