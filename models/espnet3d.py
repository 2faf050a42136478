"""3D-ESPNet (Nuechterlein and Mehta, "3D-ESPNet with Pyramidal Refinement for Volumetric Brain Tumor Image
Segmentation", BrainLes 2018, arXiv:1809.04335), written from the paper and the authors' description of the blocks
(sacmehta/3D-ESPNet ``Model.py::ESPNet``).

ESP block: 1x1x1 conv-BN-ReLU reduces to C/4 channels, four parallel 3x3x3 convs (dilation 1, 1, 2, 2; stride 2 in
a down-sampling block) fused hierarchically (outputs 2, 2+3, 2+3+4 summed), concatenated, BN, residual when shapes
match, ReLU. Encoder: 7x7x7 stride-2 stem (16), 2 blocks at 1/2 (32), stride-2 block + 2 at 1/4 (128), stride-2
block + 3 at 1/8 (256). Decoder: 3x3x3 conv + trilinear x2, merge block on the concatenation, 2 blocks, at 1/4 and
at 1/2; then the class-space tail at 1/2: 3x3x3 conv to K classes, an ASP block (3/5/7/9 kernels summed), pyramid
pooling (PSP, scales 0.2/0.4/0.6/0.8) concatenated; classifier 3x3x3 conv, ASP block, nearest x2 up-sampling,
7x7x7 conv-BN-ReLU and a bias-free 1x1x1 conv, all with K channels. The class-space tail makes the cost grow with
the number of classes: 36 GMACs at 4 classes vs 229 GMACs at 17 (1x64x128x128).

Deviations from the authors' code:
- The input is not resized to 128^3 at inference; a side that is not a multiple of 8 is resized to the next
  multiple with adaptive average pooling and the logits are interpolated back (the authors' training-time rule).
- Their BN momentum 0.95 is a decay (Caffe/TF convention); PyTorch's momentum is 1 - decay, so 0.05 is used.
- No softmax; plain BatchNorm3d.
- With ``deep_supervision=True`` two 1x1x1 heads (with bias) read the decoder outputs at 1/2 (32 channels) and 1/4
  (128 channels). ``features[0]`` is the K-channel map feeding the final 1x1x1 conv, so ``feature_channels[0]``
  equals ``num_classes``. With ``deep_supervision=False``: 3,626,584 parameters for 4 channels and 4 classes
  (paper: about 3.6 M).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models._blocks import resolve_channels
from models._errors import ModelError
from models._output import SegOutput
from models._registry import register_model

_BN_MOMENTUM, _BN_EPS = 0.05, 1e-3
_PSP_SCALES = (0.2, 0.4, 0.6, 0.8)


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers = [
        nn.Conv3d(cin, cout, kernel, stride, (kernel - 1) // 2, bias=False),
        nn.BatchNorm3d(cout, momentum=_BN_MOMENTUM, eps=_BN_EPS),
    ]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class ESPBlock(nn.Module):
    """Reduce-split-transform-merge block with hierarchical feature fusion (``DilatedParllelResidualBlockB1``)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        if cout < 4:
            raise ModelError(f"ESP block needs at least 4 output channels, got {cout}")
        n = cout // 4
        self.reduce = _conv_bn(cin, n, 1)
        self.branches = nn.ModuleList(
            nn.Conv3d(n, width, 3, stride, dilation, dilation, bias=False)
            for width, dilation in ((cout - 3 * n, 1), (n, 1), (n, 2), (n, 2))
        )
        self.bn = nn.BatchNorm3d(cout)
        self.residual = cin == cout and stride == 1

    def forward(self, x: Tensor) -> Tensor:
        h = self.reduce(x)
        d1, d2, d3, d4 = (branch(h) for branch in self.branches)
        sum3 = d2 + d3
        out = self.bn(torch.cat([d1, d2, sum3, sum3 + d4], dim=1))
        if self.residual:
            out = out + x
        return F.relu(out, inplace=True)


class ASPBlock(nn.Module):
    """Sum of 3/5/7/9-kernel conv-BN branches, residual when shapes match, ReLU (applied in class space)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(_conv_bn(cin, cout, k, relu=False) for k in (3, 5, 7, 9))
        self.residual = cin == cout

    def forward(self, x: Tensor) -> Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        if self.residual:
            out = out + x
        return F.relu(out, inplace=True)


class PSPBranch(nn.Module):
    """Adaptive average pooling to ``scale`` x the size, 3x3x3 conv-BN-ReLU, trilinear back to the input size."""

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.conv = _conv_bn(channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[2:]
        pooled = F.adaptive_avg_pool3d(x, [int(s * self.scale) for s in size])
        return F.interpolate(self.conv(pooled), size=size, mode="trilinear", align_corners=False)


def _stage(cin: int, cout: int, reps: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(ESPBlock(cin, cout, stride), *(ESPBlock(cout, cout) for _ in range(reps)))


class ESPNet3D(nn.Module):
    """3D-ESPNet; total stride 8, decoder to 1/2 resolution, class-space refinement to full resolution."""

    def __init__(
        self,
        in_channels: int = 4,
        num_classes: int = 4,
        channels: Sequence[int] = (16, 32, 128, 256),
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        c0, c1, c2, c3 = channels
        k = num_classes
        self.deep_supervision = deep_supervision
        self.stem = _conv_bn(in_channels, c0, 7, stride=2)
        self.level1 = nn.Sequential(ESPBlock(c0, c1), ESPBlock(c1, c1))
        self.level2 = _stage(c1, c2, 2, stride=2)
        self.level3 = _stage(c2, c3, 3, stride=2)
        self.up_3_2 = _conv_bn(c3, c2, 3)
        self.dec2 = _stage(2 * c2, c2, 2)
        self.up_2_1 = _conv_bn(c2, c1, 3)
        self.dec1 = _stage(2 * c1, c1, 2)
        self.to_classes = nn.Sequential(_conv_bn(c1, k, 3), ASPBlock(k, k))
        self.psp = nn.ModuleList(PSPBranch(k, s) for s in _PSP_SCALES)
        self.classifier = nn.Sequential(
            _conv_bn((len(_PSP_SCALES) + 1) * k, k, 3),
            ASPBlock(k, k),
            nn.Upsample(scale_factor=2, mode="nearest"),
            _conv_bn(k, k, 7),
        )
        self.seg = nn.Conv3d(k, k, 1, bias=False)
        self.heads = nn.ModuleList([nn.Conv3d(c1, k, 1), nn.Conv3d(c2, k, 1)] if deep_supervision else [])
        self.feature_channels = [k, c1, c2] if deep_supervision else [k]
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.kernel_size[2] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))

    @staticmethod
    def _up(x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=False)

    def forward(self, x: Tensor) -> SegOutput:
        size = tuple(x.shape[2:])
        padded = tuple(math.ceil(s / 8) * 8 for s in size)
        if padded != size:
            x = F.adaptive_avg_pool3d(x, padded)
        l1 = self.level1(self.stem(x))
        l2 = self.level2(l1)
        l3 = self.level3(l2)
        d2 = self.dec2(torch.cat([self._up(self.up_3_2(l3)), l2], dim=1))
        d1 = self.dec1(torch.cat([self._up(self.up_2_1(d2)), l1], dim=1))
        t = self.to_classes(d1)
        pyramid = torch.cat([t, *(branch(t) for branch in self.psp)], dim=1)
        full = self.classifier(pyramid)
        if padded != size:
            full = F.interpolate(full, size=size, mode="trilinear", align_corners=False)
        main = self.seg(full)
        if not self.deep_supervision:
            return SegOutput([main], [full])
        return SegOutput([main, self.heads[0](d1), self.heads[1](d2)], [full, d1, d2])


@register_model(
    "espnet3d",
    description="3D-ESPNet: ESP blocks, PSP/ASP classifier in class space, so its cost grows with the number of "
    "classes (3.6 M params at 4; 36 -> 229 GMACs from 4 to 17 classes)",
    reference="Nuechterlein and Mehta, BrainLes 2018, arXiv:1809.04335; github.com/sacmehta/3D-ESPNet Model.py",
    default_patch=(64, 128, 128),
    stride=8,
)
def espnet3d(
    in_channels: int = 1,
    num_classes: int = 17,
    channels: Sequence[int] | None = None,
    base_channels: int | None = None,
    deep_supervision: bool = True,
) -> ESPNet3D:
    """3D-ESPNet as its authors build it.

    Args:
        channels: widths at full, 1/2, 1/4 and 1/8 resolution, default [16,32,128,256].
        base_channels: the stem width, the others 2, 8 and 16 times it (give channels or base_channels, not both).
        deep_supervision: also return the coarser decoder heads' logits and features (deep supervision; the
            multi-scale KD methods need them).
    """
    chans = resolve_channels(channels, base_channels, (16, 32, 128, 256), (1, 2, 8, 16))
    return ESPNet3D(in_channels, num_classes, chans, deep_supervision)
