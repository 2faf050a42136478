"""DMFNet and MFNet (Chen et al., "3D Dilated Multi-Fiber Network for Real-time Brain Tumor Segmentation in MRI",
MICCAI 2019, arXiv:1904.03355), written from the paper and the authors' description of the blocks
(China-LiuXiaopeng/BraTS-DMFNet ``models/DMFNet_16x.py``).

A multi-fibre (MF) unit is pre-activated (BN-ReLU-conv everywhere): a 1x1x1 conv to C_in/4 channels, a 1x1x1
"multiplexer" back to min(C_in, C_out), a grouped (16 fibres) 3x3x3 conv, a grouped in-plane 3x3 conv and a
residual (1x1x1 or, when down-sampling, 2x2x2 stride-2 projection). The dilated MF (DMF) unit replaces the 3x3x3 conv
by three parallel ones with dilation 1, 2, 3 summed with learnable scalar weights; DMFNet uses DMF units in the
first two encoder stages. Stem: plain stride-2 3x3x3 conv; decoder: trilinear up-sampling, concatenation, one MF unit.

Deviations from the authors' code:
- Their volumes are laid out [H, W, D] and the second grouped conv is 3x3x1 (in-plane); here volumes are [D, H, W]
  so the same conv is (1, 3, 3). Parameter and MAC counts are unchanged.
- Plain BatchNorm3d instead of SynchronizedBatchNorm3d; no softmax at the end (logits are returned).
- With ``deep_supervision=True`` three 1x1x1 heads (with bias) are added on the decoder outputs at 1/2, 1/4 and
  1/8 resolution. ``features[0]`` is the up-sampled 1/2-resolution decoder output, which is what the original
  bias-free 1x1x1 classifier sees. With ``deep_supervision=False`` the network is the authors' one: 3,875,890
  parameters for 4 channels and 4 classes (paper: 3.88 M), MFNet 3,194,784 (3.19 M).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from models._blocks import resolve_channels
from models._errors import ModelError
from models._output import SegOutput
from models._registry import register_model

_REFERENCE = (
    "Chen et al., MICCAI 2019, arXiv:1904.03355; github.com/China-LiuXiaopeng/BraTS-DMFNet models/DMFNet_16x.py"
)


class _PreActConv(nn.Sequential):
    """BN -> ReLU -> bias-free conv (the authors' ``Conv3d_Block`` / ``DilatedConv3DBlock``)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int | tuple[int, int, int],
        stride: int = 1,
        groups: int = 1,
        dilation: int = 1,
    ) -> None:
        kernel3 = (kernel,) * 3 if isinstance(kernel, int) else kernel
        dilation3 = tuple(dilation if k > 1 else 1 for k in kernel3)
        padding = tuple((k - 1) // 2 * d for k, d in zip(kernel3, dilation3))
        super().__init__(
            nn.BatchNorm3d(cin),
            nn.ReLU(inplace=True),
            nn.Conv3d(cin, cout, kernel3, stride, padding, dilation3, groups=groups, bias=False),
        )


class FiberUnit(nn.Module):
    """MF unit (``dilations=(1,)``) or DMF unit (``dilations=(1, 2, 3)``, weighted sum of the dilated branches)."""

    def __init__(self, cin: int, cout: int, groups: int, stride: int = 1, dilations: Sequence[int] = (1,)) -> None:
        super().__init__()
        mid = min(cin, cout)
        self.squeeze = _PreActConv(cin, cin // 4, 1)
        self.multiplexer = _PreActConv(cin // 4, mid, 1)
        self.branches = nn.ModuleList(_PreActConv(mid, cout, 3, stride, groups, d) for d in dilations)
        # learnable fusion weights exist only in the dilated unit (the plain MF unit has a single branch)
        self.weights = nn.Parameter(torch.ones(len(dilations))) if len(dilations) > 1 else None
        self.in_plane = _PreActConv(cout, cout, (1, 3, 3), groups=groups)
        if stride != 1:
            self.shortcut: nn.Module = _PreActConv(cin, cout, 2, stride=2)
        elif cin != cout:
            self.shortcut = _PreActConv(cin, cout, 1)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.multiplexer(self.squeeze(x))
        if self.weights is None:
            h = self.branches[0](h)
        else:
            fused = self.weights[0] * self.branches[0](h)
            for i in range(1, len(self.branches)):
                fused = fused + self.weights[i] * self.branches[i](h)
            h = fused
        return self.in_plane(h) + self.shortcut(x)


class DMFNet(nn.Module):
    """Encoder (stride 2 stem, three stages of three units) and a three-unit trilinear decoder; total stride 16."""

    def __init__(
        self,
        in_channels: int = 4,
        num_classes: int = 4,
        channels: Sequence[int] = (32, 128),
        groups: int = 16,
        dilated: bool = True,
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        n, c = channels
        for width in (n, c):
            if width % groups or width % 4:
                raise ModelError(f"DMFNet: channel count {width} must be divisible by groups={groups} and by 4")
        self.deep_supervision = deep_supervision
        dil = (1, 2, 3) if dilated else (1,)

        def stage(cin: int, cout: int, last: int, dilations: Sequence[int]) -> nn.Sequential:
            return nn.Sequential(
                FiberUnit(cin, cout, groups, 2, dilations),
                FiberUnit(cout, cout, groups, 1, dilations),
                FiberUnit(cout, last, groups, 1, dilations),
            )

        self.stem = nn.Conv3d(in_channels, n, 3, stride=2, padding=1, bias=False)
        self.encoder = nn.ModuleList(
            [stage(n, c, c, dil), stage(c, 2 * c, 2 * c, dil), stage(2 * c, 3 * c, 2 * c, (1,))]
        )
        self.up = nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)
        # decoder from 1/8 to 1/2 resolution
        self.decoder = nn.ModuleList(
            [
                FiberUnit(4 * c, 2 * c, groups),
                FiberUnit(2 * c + c, c, groups),
                FiberUnit(c + n, n, groups),
            ]
        )
        self.seg = nn.Conv3d(n, num_classes, 1, bias=False)
        self.heads = nn.ModuleList([nn.Conv3d(w, num_classes, 1) for w in (n, c, 2 * c)] if deep_supervision else [])
        self.feature_channels = [n, n, c, 2 * c] if deep_supervision else [n]
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: Tensor) -> SegOutput:
        skips = [self.stem(x)]
        for stage in self.encoder:
            skips.append(stage(skips[-1]))
        y = skips.pop()
        decoded = []
        for block, skip in zip(self.decoder, reversed(skips)):
            y = block(torch.cat([skip, self.up(y)], dim=1))
            decoded.append(y)
        decoded.reverse()  # 1/2, 1/4, 1/8
        full = self.up(decoded[0])
        if not self.deep_supervision:
            return SegOutput([self.seg(full)], [full])
        features = [full, *decoded]
        logits = [self.seg(full)] + [head(f) for head, f in zip(self.heads, decoded)]
        return SegOutput(logits, features)


def _build(
    dilated: bool,
    in_channels: int,
    num_classes: int,
    channels: Sequence[int] | None,
    base_channels: int | None,
    groups: int,
    deep_supervision: bool,
) -> DMFNet:
    chans = resolve_channels(channels, base_channels, (32, 128), (1, 4))
    return DMFNet(in_channels, num_classes, chans, groups, dilated, deep_supervision)


@register_model(
    "dmfnet",
    description="DMFNet: dilated multi-fiber units, 16 fibres, 3.88 M params / 27.0 GMACs at 4x128^3, 4 classes",
    reference=_REFERENCE,
    default_patch=(64, 128, 128),
    stride=16,
)
def dmfnet(
    in_channels: int = 1,
    num_classes: int = 17,
    channels: Sequence[int] | None = None,
    base_channels: int | None = None,
    groups: int = 16,
    deep_supervision: bool = True,
) -> DMFNet:
    """DMFNet as its authors build it.

    Args:
        channels: (n, c): stem/top width n (32) and first-stage width c (128); later stages use 2c and 3c.
            [paper: n=32, c=128]
        base_channels: n, with c = 4n (give channels or base_channels, not both).
        groups: fibres (groups) of each multi-fibre unit. [paper: 16]
        deep_supervision: also return the coarser decoder heads' logits and features (deep supervision; the
            multi-scale KD methods need them).
    """
    return _build(True, in_channels, num_classes, channels, base_channels, groups, deep_supervision)


@register_model(
    "mfnet",
    description="MFNet: DMFNet without dilation, 3.19 M params / 20.6 GMACs at 4x128^3, 4 classes",
    reference=_REFERENCE,
    default_patch=(64, 128, 128),
    stride=16,
)
def mfnet(
    in_channels: int = 1,
    num_classes: int = 17,
    channels: Sequence[int] | None = None,
    base_channels: int | None = None,
    groups: int = 16,
    deep_supervision: bool = True,
) -> DMFNet:
    """MFNet: DMFNet without dilation.

    Args:
        channels: (n, c) as for ``dmfnet``. [paper: n=32, c=128]
        base_channels: n, with c = 4n (give channels or base_channels, not both).
        groups: fibres (groups) of each multi-fibre unit. [paper: 16]
        deep_supervision: also return the coarser decoder heads' logits and features (deep supervision; the
            multi-scale KD methods need them).
    """
    return _build(False, in_channels, num_classes, channels, base_channels, groups, deep_supervision)
