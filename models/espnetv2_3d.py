"""3D ESPNetV2 as the ACF-BCKD benchmark builds it (Yu et al., ESWA 2025; github.com/605671435/ACF-BCKD
``seg/models/nets/espnetv2.py::ESPNetv2Segmentation`` and ``seg/models/nets/utils/``, their 3D port of Mehta et al.,
"ESPNetv2", CVPR 2019, sacmehta/EdgeNets ``model/segmentation/espnetv2.py``).

Encoder (EESPNet at scale s = 1, widths 32, 64, 128, 256; levels 5 and the classifier deleted, as they do):
a stride-2 3x3x3 conv-BN-PReLU stem (1/2); down-samplers to 1/4, 1/8 and 1/16, each the concatenation of a 3x3x3
stride-2 average pool and a stride-2 EESP block, plus a projection of the input average-pooled to that size (input
reinforcement), then PReLU; 3 EESP blocks at 1/8 and 7 at 1/16. An EESP block: grouped (4) 1x1x1 conv-BN-PReLU to
C/4 channels, four depthwise 3x3x3 convs with dilations from the receptive-field limit (1, 2, 3, 4, or 1, 1, 2, 3 at
1/16), hierarchically summed, concatenated, BN-PReLU, grouped 1x1x1 conv-BN, residual when shapes match, PReLU.

Decoder: an efficient pyramid pooling module (EPP: 1x1x1 projection to min(K // 2, 16) channels, depthwise 3x3x3
convs at 2, 1.5, 1, 0.5 and 0.1 times the size (at least 5 voxels a side), channel shuffle, grouped 3x3x3 conv,
1x1x1 conv) at 1/16 to 64 channels; then three times: trilinear x2 (align_corners), plus a sigmoid-gated grouped
3x3x3 projection of the encoder level (EfficientPWConv), BN-PReLU, EPP; widths 48 (1/8), 32 (1/4) and K (1/2, its
last 1x1x1 conv with bias and no BN). The K-channel map is interpolated trilinearly to the input size.

Contract: ``features[0]`` is the full-resolution K-channel map (it is the logits: the network ends in class space,
like ``espnetv2`` in their code); with ``deep_supervision=True`` 1x1x1 heads (with bias) read the decoder outputs at
1/4 (32 channels) and 1/8 (48 channels). Their configuration passes ``s=1.0, channels=1`` (an mmengine ConfigDict,
read by attribute). Parameters: 284,438 at 14 classes (their BTCV setting), 286,187 at 17 (``docs/model-zoo.md``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models._blocks import kaiming_fan_out_init, resolve_channels
from models._errors import ModelError
from models._output import SegOutput
from models._registry import register_model

_BRANCHES = 4  # EESP's parallel branches (espnetv2_config.branches)
_RECEPTIVE_LIMITS = (13, 11, 9, 7)  # per level, 1/4 .. 1/16 (espnetv2_config.recept_limit, level 5 unused)
_REPS = (3, 7)  # EESP blocks at 1/8 and 1/16 (espnetv2_config.rep_layers[1:3])
_DECODER_BASE = 16  # base_dec_planes: decoder widths 64, 48, 32
_EPP_SCALES = (2.0, 1.5, 1.0, 0.5, 0.1)
_PATCH = (96, 96, 96)


def _cbr(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Bias-free conv, BN, PReLU with one slope per channel (their ``CBR``)."""
    return nn.Sequential(
        nn.Conv3d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm3d(cout),
        nn.PReLU(cout),
    )


def _br(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm3d(channels), nn.PReLU(channels))


class EESP(nn.Module):
    """Reduce (grouped 1x1x1), split into depthwise dilated 3x3x3 branches, hierarchical sum, merge (grouped 1x1x1)."""

    def __init__(self, cin: int, cout: int, stride: int, receptive_limit: int) -> None:
        super().__init__()
        if cin % _BRANCHES or cout % (_BRANCHES * _BRANCHES):
            raise ModelError(
                f"an EESP block needs an input width that is a multiple of {_BRANCHES} and an output width that is a "
                f"multiple of {_BRANCHES * _BRANCHES} (its 1x1x1 convs have {_BRANCHES} groups), got {cin} -> {cout}"
            )
        n = cout // _BRANCHES
        self.stride = stride
        self.reduce = _cbr(cin, n, 1, groups=_BRANCHES)
        kernels = sorted(k if k <= receptive_limit else 3 for k in range(3, 3 + 2 * _BRANCHES, 2))
        self.branches = nn.ModuleList(
            nn.Conv3d(n, n, 3, stride, padding=(k - 1) // 2, dilation=(k - 1) // 2, groups=n, bias=False)
            for k in kernels
        )
        self.merge = nn.Sequential(
            _br(cout), nn.Conv3d(cout, cout, 1, groups=_BRANCHES, bias=False), nn.BatchNorm3d(cout)
        )
        self.act = nn.PReLU(cout) if stride == 1 else None  # a down-sampling block returns before its activation

    def forward(self, x: Tensor) -> Tensor:
        reduced = self.reduce(x)
        outputs = [self.branches[0](reduced)]
        for branch in self.branches[1:]:
            outputs.append(branch(reduced) + outputs[-1])
        out = self.merge(torch.cat(outputs, dim=1))
        if self.act is None:
            return out
        if out.shape == x.shape:
            out = out + x
        return self.act(out)


class DownSampler(nn.Module):
    """Concatenated average pool and stride-2 EESP, plus the projected down-pooled input, then PReLU."""

    def __init__(self, cin: int, cout: int, receptive_limit: int, image_channels: int) -> None:
        super().__init__()
        if cout <= cin:
            raise ModelError(f"a down-sampler must widen its input, got {cin} -> {cout}")
        self.eesp = EESP(cin, cout - cin, 2, receptive_limit)
        self.pool = nn.AvgPool3d(3, stride=2, padding=1)
        self.reinforce = nn.Sequential(
            _cbr(image_channels, image_channels, 3),
            nn.Conv3d(image_channels, cout, 1, bias=False),
            nn.BatchNorm3d(cout),
        )
        self.act = nn.PReLU(cout)

    def forward(self, x: Tensor, image: Tensor) -> Tensor:
        """``image`` is the input already average-pooled to this block's output size."""
        out = torch.cat([self.pool(x), self.eesp(x)], dim=1)
        return self.act(out + self.reinforce(image))


class EfficientPyramidPool(nn.Module):
    """EPP: project, depthwise 3x3x3 at five scales, shuffle, grouped 3x3x3, 1x1x1 (then BN-PReLU unless last)."""

    def __init__(self, cin: int, projected: int, cout: int, last: bool = False) -> None:
        super().__init__()
        self.project = _cbr(cin, projected, 1)
        self.stages = nn.ModuleList(
            nn.Conv3d(projected, projected, 3, padding=1, groups=projected, bias=False) for _ in _EPP_SCALES
        )
        self.merge_br = _br(projected * len(_EPP_SCALES))
        self.merge = nn.Sequential(
            _cbr(projected * len(_EPP_SCALES), projected, 3, groups=projected),
            nn.Conv3d(projected, cout, 1, bias=last),
        )
        self.out_br = None if last else _br(cout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.project(x)
        size = x.shape[2:]
        pyramid = []
        for scale, stage in zip(_EPP_SCALES, self.stages):
            scaled = [max(math.ceil(s * scale), 5) for s in size]
            if scale < 1.0:
                h = F.interpolate(stage(F.adaptive_avg_pool3d(x, scaled)), size, mode="trilinear", align_corners=True)
            elif scale > 1.0:
                h = F.adaptive_avg_pool3d(stage(F.interpolate(x, scaled, mode="trilinear", align_corners=True)), size)
            else:
                h = stage(x)
            pyramid.append(h)
        out = self.merge_br(torch.cat(pyramid, dim=1))
        b, c = out.shape[:2]  # channel shuffle: interleave the five scales
        out = out.reshape(b, len(_EPP_SCALES), c // len(_EPP_SCALES), *size).transpose(1, 2).reshape(b, c, *size)
        out = self.merge(out)
        return out if self.out_br is None else self.out_br(out)


class EfficientPWConv(nn.Module):
    """Grouped (gcd) 3x3x3 conv-BN-PReLU gated by a sigmoid of the globally pooled input's 1x1x1 projection."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Conv3d(cin, cout, 1, bias=False), nn.Sigmoid())
        self.expand = _cbr(cin, cout, 3, groups=math.gcd(cin, cout))

    def forward(self, x: Tensor) -> Tensor:
        return self.expand(x) * self.gate(x)


class ESPNetV2(nn.Module):
    """ESPNetV2 segmentation network in 3D: EESP encoder to 1/16, EPP decoder to 1/2, interpolated to full size."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: Sequence[int] = (32, 64, 128, 256),
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        c1, c2, c3, c4 = channels
        d = (4 * _DECODER_BASE, 3 * _DECODER_BASE, 2 * _DECODER_BASE)
        projected = min(num_classes // 2, _DECODER_BASE)
        self.deep_supervision = deep_supervision
        self.stem = _cbr(in_channels, c1, 3, stride=2)
        self.down2 = DownSampler(c1, c2, _RECEPTIVE_LIMITS[0], in_channels)
        self.down3 = DownSampler(c2, c3, _RECEPTIVE_LIMITS[1], in_channels)
        self.level3 = nn.Sequential(*(EESP(c3, c3, 1, _RECEPTIVE_LIMITS[2]) for _ in range(_REPS[0])))
        self.down4 = DownSampler(c3, c4, _RECEPTIVE_LIMITS[2], in_channels)
        self.level4 = nn.Sequential(*(EESP(c4, c4, 1, _RECEPTIVE_LIMITS[3]) for _ in range(_REPS[1])))
        self.pyramid = nn.ModuleList(
            [
                EfficientPyramidPool(c4, projected, d[0]),
                EfficientPyramidPool(d[0], projected, d[1]),
                EfficientPyramidPool(d[1], projected, d[2]),
                EfficientPyramidPool(d[2], projected, num_classes, last=True),
            ]
        )
        self.skips = nn.ModuleList([EfficientPWConv(c3, d[0]), EfficientPWConv(c2, d[1]), EfficientPWConv(c1, d[2])])
        self.skip_br = nn.ModuleList(_br(c) for c in d)
        self.heads = nn.ModuleList([nn.Conv3d(d[2], num_classes, 1), nn.Conv3d(d[1], num_classes, 1)]) if (
            deep_supervision
        ) else None  # fmt: skip
        self.feature_channels = [num_classes, d[2], d[1]] if deep_supervision else [num_classes]
        kaiming_fan_out_init(self)

    @staticmethod
    def _down_pool(x: Tensor) -> Tensor:
        return F.avg_pool3d(x, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> SegOutput:
        size = x.shape[2:]
        e1 = self.stem(x)  # 1/2
        image = self._down_pool(self._down_pool(x))  # the input pooled alongside each down-sampler
        e2 = self.down2(e1, image)  # 1/4
        image = self._down_pool(image)
        e3 = self.level3(self.down3(e2, image))  # 1/8
        e4 = self.level4(self.down4(e3, self._down_pool(image)))  # 1/16
        decoded = [self.pyramid[0](e4)]
        for epp, skip, br, enc in zip(self.pyramid[1:], self.skips, self.skip_br, (e3, e2, e1)):
            up = F.interpolate(decoded[-1], enc.shape[2:], mode="trilinear", align_corners=True)
            decoded.append(epp(br(skip(enc) + up)))
        logits = F.interpolate(decoded[-1], size, mode="trilinear", align_corners=True)
        if self.heads is None:
            return SegOutput([logits], [logits])
        d8, d4 = decoded[1], decoded[2]
        return SegOutput([logits, self.heads[0](d4), self.heads[1](d8)], [logits, d4, d8])


@register_model(
    "espnetv2_3d",
    description="ACF-BCKD's 3D ESPNetV2 student (EESP encoder 32..256 to 1/16, EPP decoder), 0.29 M params at 17",
    reference="Mehta et al., CVPR 2019 (ESPNetv2); github.com/605671435/ACF-BCKD seg/models/nets/espnetv2.py",
    default_patch=_PATCH,
    stride=16,
)
def espnetv2_3d(
    in_channels: int = 1,
    num_classes: int = 17,
    channels: Sequence[int] | None = None,
    base_channels: int | None = None,
    deep_supervision: bool = True,
) -> ESPNetV2:
    """ACF-BCKD's 3D ESPNetV2, as their configuration builds it (``s=1.0``).

    Args:
        channels: encoder widths at 1/2, 1/4, 1/8 and 1/16, default [32,64,128,256] (scale s = 1); each step must
            widen by a multiple of 16 (so base_channels is a multiple of 16). The decoder widths (64, 48, 32) are
            fixed, as in their code.
        base_channels: the stem width, the others 2, 4 and 8 times it (give channels or base_channels, not both).
        deep_supervision: also return 1x1x1-head logits and the decoder features at 1/4 and 1/8 (added here; their
            network has one output).
    """
    chans = resolve_channels(channels, base_channels, (32, 64, 128, 256), (1, 2, 4, 8))
    return ESPNetV2(in_channels, num_classes, chans, deep_supervision)
