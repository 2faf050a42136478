"""HDC-Net (Luo et al., "HDC-Net: Hierarchical Decoupled Convolution Network for Brain Tumor Segmentation",
IEEE JBHI 25(3):737-745, 2021, doi:10.1109/JBHI.2020.2998146), written from the paper and the authors' description
of the blocks (luozhengrong/HDC-Net ``models/HDC_Net.py``).

The input is rearranged space-to-depth by 2 (every 2x2x2 voxel block becomes 8 channels), then a 3x3x3 conv and
four levels of HDC modules, all with 32 channels. HDC module: 1x1x1 conv, four channel groups of which the last three
go through 3x3x1 convs hierarchically (each adds the previous group's output, as in Res2Net), concatenation, 1x1x1
conv, residual (1x1x1 projection when the input is wider), then a 1x3x3 conv; every conv has bias and is followed by
BN and ReLU. Down-sampling: stride-2 3x3x3 conv; up-sampling: 3x3x3 stride-2 transposed conv; the last decoder level
(1/2 resolution) is up-sampled trilinearly before a 1x1x1 classifier. Total stride 16.

Adaptation to one CT channel: the authors use 4 MRI channels, so space-to-depth gives 32 = width channels; with
``in_channels`` channels it gives ``8 * in_channels``, and the first 3x3x3 conv takes those (8 for CT) instead of 32.
297,308 parameters for 4 channels and 4 classes, 277,001 for 1 channel and 17 classes.

Further deviations from the authors' code:
- Their volumes are laid out [H, W, D]; here [D, H, W], so their 3x3x1 (in-plane) conv is (1, 3, 3) and their
  1x3x3 conv (1 along H, 3 along W and D) is (3, 1, 3). Parameter and MAC counts are unchanged.
- Plain BatchNorm3d instead of SynchronizedBatchNorm3d; no softmax; the space-to-depth channel order differs
  (immaterial for a learned conv).
- With ``deep_supervision=True`` three 1x1x1 heads read the decoder outputs at 1/2, 1/4 and 1/8 resolution;
  ``features[0]`` is the up-sampled 1/2-resolution output that feeds the original classifier.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models._errors import ModelError
from models._output import SegOutput
from models._registry import register_model

_IN_PLANE = (1, 3, 3)  # authors' 3x3x1 in [H, W, D]
_CROSS_PLANE = (3, 1, 3)  # authors' 1x3x3 in [H, W, D]


def _conv_bn_relu(cin: int, cout: int, kernel: tuple[int, int, int] | int, stride: int = 1) -> nn.Sequential:
    kernel3 = (kernel,) * 3 if isinstance(kernel, int) else kernel
    padding = tuple((k - 1) // 2 for k in kernel3)
    return nn.Sequential(nn.Conv3d(cin, cout, kernel3, stride, padding), nn.BatchNorm3d(cout), nn.ReLU())


def space_to_depth(x: Tensor, factor: int = 2) -> Tensor:
    """[B, C, D, H, W] -> [B, C * factor^3, D / factor, H / factor, W / factor] (every side must be divisible)."""
    b, c, d, h, w = x.shape
    f = factor
    x = x.reshape(b, c, d // f, f, h // f, f, w // f, f)
    return x.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(b, c * f**3, d // f, h // f, w // f)


class HDCModule(nn.Module):
    """Hierarchical decoupled convolution module (in >= out channels; out divisible by 4)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        if cout % 4 or cin < cout:
            raise ModelError(f"HDC module needs out channels divisible by 4 and in >= out, got {cin} -> {cout}")
        self.group = cout // 4
        self.expand = _conv_bn_relu(cin, cout, 1)
        self.hierarchy = nn.ModuleList(_conv_bn_relu(self.group, self.group, _IN_PLANE) for _ in range(3))
        self.fuse = _conv_bn_relu(cout, cout, 1)
        self.project = _conv_bn_relu(cin, cout, 1) if cin > cout else nn.Identity()
        self.cross = _conv_bn_relu(cout, cout, _CROSS_PLANE)

    def forward(self, x: Tensor) -> Tensor:
        groups = list(self.expand(x).split(self.group, dim=1))
        previous = None
        for i, conv in enumerate(self.hierarchy, start=1):
            previous = conv(groups[i] if previous is None else groups[i] + previous)
            groups[i] = previous
        h = self.fuse(torch.cat(groups, dim=1))
        return self.cross(self.project(x) + h)


def _up(width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose3d(width, width, 3, stride=2, padding=1, output_padding=1), nn.BatchNorm3d(width), nn.ReLU()
    )


class HDCNet(nn.Module):
    """Space-to-depth, three down-sampling levels plus a bridge, three decoder levels; constant width."""

    def __init__(
        self, in_channels: int = 4, num_classes: int = 4, width: int = 32, deep_supervision: bool = True
    ) -> None:
        super().__init__()
        self.deep_supervision = deep_supervision
        self.stem = _conv_bn_relu(8 * in_channels, width, 3)
        self.encoders = nn.ModuleList(HDCModule(width, width) for _ in range(3))
        self.downs = nn.ModuleList(_conv_bn_relu(width, width, 3, stride=2) for _ in range(3))
        self.bridge = HDCModule(width, width)
        self.ups = nn.ModuleList(_up(width) for _ in range(3))
        self.decoders = nn.ModuleList(HDCModule(2 * width, width) for _ in range(3))
        self.upsample = nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)
        self.seg = nn.Conv3d(width, num_classes, 1)
        self.heads = nn.ModuleList(nn.Conv3d(width, num_classes, 1) for _ in range(3 if deep_supervision else 0))
        self.feature_channels = [width] * (4 if deep_supervision else 1)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: Tensor) -> SegOutput:
        y = self.stem(space_to_depth(x))
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            skip = encoder(y)
            skips.append(skip)
            y = down(skip)
        y = self.bridge(y)
        decoded = []
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips)):
            y = decoder(torch.cat([up(y), skip], dim=1))
            decoded.append(y)
        decoded.reverse()  # 1/2, 1/4, 1/8
        full = self.upsample(decoded[0])
        if not self.deep_supervision:
            return SegOutput([self.seg(full)], [full])
        logits = [self.seg(full)] + [head(f) for head, f in zip(self.heads, decoded)]
        return SegOutput(logits, [full, *decoded])


@register_model(
    "hdcnet",
    description="HDC-Net: space-to-depth input, hierarchical decoupled (pseudo-3D) convs, 32 channels, ~0.28 M params",
    reference="Luo et al., IEEE JBHI 2021, doi:10.1109/JBHI.2020.2998146; github.com/luozhengrong/HDC-Net",
    default_patch=(64, 128, 128),
    stride=16,
)
def hdcnet(
    in_channels: int = 1,
    num_classes: int = 17,
    base_channels: int = 32,
    deep_supervision: bool = True,
) -> HDCNet:
    """HDC-Net as its authors build it.

    Args:
        base_channels: the single width used at every level (must be divisible by 4). [paper: 32]
        deep_supervision: also return the coarser decoder heads' logits and features (deep supervision; the
            multi-scale KD methods need them).
    """
    return HDCNet(in_channels, num_classes, base_channels, deep_supervision)
