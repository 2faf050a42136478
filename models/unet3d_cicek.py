"""The original 3D U-Net (Çiçek et al., "3D U-Net: Learning Dense Volumetric Segmentation from Sparse Annotation",
MICCAI 2016, arXiv:1606.06650), written from the paper (there is no official PyTorch code).

Analysis path: per level two 3x3x3 conv-BN-ReLU, the first doubling the channels except at the top (32/64,
64/128, 128/256, 256/512), then 2x2x2 max pooling (three poolings). Synthesis path: 2x2x2 stride-2 up-convolution
keeping the channels, concatenation with the skip, two 3x3x3 conv-BN-ReLU halving them; final 1x1x1 conv.

The paper reports 19,069,955 parameters (3 input channels, 3 classes). A re-implementation with biased convs and
affine BN gives 19,075,523. The paper's figure is matched exactly by the
construction used here: every 3x3x3 conv has a bias, BN has no learnable scale/shift (the authors used Caffe, whose
BatchNorm layer has none; a separate Scale layer would add them) and the up-convolutions have no bias.

Deviations: "same" padding instead of the paper's unpadded convs, so the output has the input's size (any side
divisible by 8). With ``deep_supervision=True`` two 1x1x1 heads (with bias) are added at 1/2 and 1/4 resolution;
parameter figures above are for ``deep_supervision=False``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from models._blocks import decode, encode, resolve_channels
from models._output import SegOutput
from models._registry import register_model


def _double_conv(cin: int, mid: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, mid, 3, padding=1), nn.BatchNorm3d(mid, affine=False), nn.ReLU(inplace=True),
        nn.Conv3d(mid, cout, 3, padding=1), nn.BatchNorm3d(cout, affine=False), nn.ReLU(inplace=True),
    )  # fmt: skip


class UNet3DCicek(nn.Module):
    """Four-level 3D U-Net (three poolings); ``channels=(c0..c4)``: level i convs give c[i] then c[i+1]."""

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 3,
        channels: Sequence[int] = (32, 64, 128, 256, 512),
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        c = list(channels)
        self.deep_supervision = deep_supervision
        self.pool = nn.MaxPool3d(2, 2)
        self.encoders = nn.ModuleList(
            [_double_conv(in_channels, c[0], c[1])] + [_double_conv(c[i], c[i], c[i + 1]) for i in (1, 2, 3)]
        )
        # decoder from 1/4 to full resolution
        self.ups = nn.ModuleList(nn.ConvTranspose3d(c[i + 1], c[i + 1], 2, stride=2, bias=False) for i in (3, 2, 1))
        self.decoders = nn.ModuleList(_double_conv(c[i + 1] + c[i], c[i], c[i]) for i in (3, 2, 1))
        self.seg = nn.Conv3d(c[1], num_classes, 1)
        self.heads = nn.ModuleList(nn.Conv3d(c[i], num_classes, 1) for i in (2, 3)) if deep_supervision else None
        self.feature_channels = [c[1], c[2], c[3]] if deep_supervision else [c[1]]

    def forward(self, x: Tensor) -> SegOutput:
        skips = encode(x, self.encoders, self.pool)
        features = decode(skips.pop(), skips, self.ups, self.decoders)  # full, 1/2, 1/4
        if self.heads is None:
            return SegOutput([self.seg(features[0])], [features[0]])
        logits = [self.seg(features[0])] + [head(f) for head, f in zip(self.heads, features[1:])]
        return SegOutput(logits, features)


@register_model(
    "unet3d-cicek",
    description="Original 3D U-Net (Çiçek 2016): 4 levels 32..512, BN, 19.07 M params at 3 in / 3 classes",
    reference="Çiçek et al., MICCAI 2016, arXiv:1606.06650",
    default_patch=(64, 128, 128),
    stride=8,
)
def unet3d_cicek(
    in_channels: int = 1,
    num_classes: int = 17,
    channels: Sequence[int] | None = None,
    base_channels: int | None = None,
    deep_supervision: bool = True,
) -> UNet3DCicek:
    """Çiçek et al.'s 3D U-Net.

    Args:
        channels: widths of the four levels and the bottleneck, default [32,64,128,256,512].
        base_channels: width of the first level, the others 2, 4, 8 and 16 times it (give channels or base_channels,
            not both).
        deep_supervision: also return the coarser decoder heads' logits and features (deep supervision; the
            multi-scale KD methods need them).
    """
    chans = resolve_channels(channels, base_channels, (32, 64, 128, 256, 512), (1, 2, 4, 8, 16))
    return UNet3DCicek(in_channels, num_classes, chans, deep_supervision)
