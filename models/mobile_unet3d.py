"""3D Mobile U-Net as the ACF-BCKD benchmark builds it (Yu et al., ESWA 2025; github.com/605671435/ACF-BCKD
``seg/models/nets/mobile_unet.py::MobileUNet``, their 3D port of L. Mattara's lafith/Mobile-UNet ``model.py``):
a MobileNetV2 encoder and a decoder of inverted residual blocks with depthwise transposed convs.

Encoder: a depthwise stride-2 3x3x3 conv (with bias), BN, ReLU6 and a 1x1x1 conv (with bias) to 32 channels (1/2);
then MobileNetV2's bottlenecks (out channels, repeats, stride, expansion): (16, 1, 1, 1), (24, 2, 2, 6),
(32, 3, 2, 6), (64, 4, 2, 6), (96, 3, 1, 6), (160, 3, 2, 6), (320, 1, 1, 6), down to 1/32, and a 1x1x1 conv (with
bias) to 1280. An inverted residual block: bias-free 1x1x1 expansion conv-BN-ReLU6, depthwise 3x3x3 conv-BN-ReLU6
(stride s), 1x1x1 projection conv-BN; at stride 1 the input is added, through a bias-free 1x1x1 conv when the
channels change. Decoder: four single inverted residual blocks whose depthwise conv is a stride-2 4x4x4 transposed
conv (1280 -> 96, 96 -> 32, 32 -> 24, 24 -> 16, up to 1/2), each output plus the encoder feature of that size;
a depthwise 4x4x4 stride-2 transposed conv to full resolution (16 channels) and a 1x1x1 conv (with bias) to K.

Difference from their code: their block builds the 1x1x1 shortcut conv in every block but uses it only at stride 1
with a change of channels; the unused ones (230,208 parameters, of which 1280 x 96 in the first decoder block) are not
built here, so that every parameter gets a gradient (their 13,883,132 parameters at 14 classes are 13,652,924 here;
``docs/model-zoo.md``). ``features[0]`` is the 16-channel full-resolution map; with ``deep_supervision=True`` 1x1x1
heads (with bias) read the decoder sums at 1/2, 1/4 and 1/8.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from models._blocks import kaiming_fan_out_init
from models._errors import ModelError
from models._output import SegOutput
from models._registry import register_model

# MobileNetV2's bottlenecks: (index of the output width in the channel list, repeats, stride, expansion)
_BOTTLENECKS = ((1, 1, 1, 1), (2, 2, 2, 6), (3, 3, 2, 6), (4, 4, 2, 6), (5, 3, 1, 6), (6, 3, 2, 6), (7, 1, 1, 6))
_DEFAULT_CHANNELS = (32, 16, 24, 32, 64, 96, 160, 320, 1280)
_EXPANSION = 6
_PATCH = (96, 96, 96)


class InvertedResidual(nn.Module):
    """1x1x1 expand, depthwise 3x3x3 conv (or 4x4x4 transposed conv up), 1x1x1 project; residual at stride 1."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int, up: bool = False) -> None:
        super().__init__()
        hidden = cin * expansion
        if up:
            depthwise: nn.Module = nn.ConvTranspose3d(hidden, hidden, 4, stride, 1, groups=hidden, bias=False)
        else:
            depthwise = nn.Conv3d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)
        self.conv = nn.Sequential(
            nn.Conv3d(cin, hidden, 1, bias=False), nn.BatchNorm3d(hidden), nn.ReLU6(inplace=True),
            depthwise, nn.BatchNorm3d(hidden), nn.ReLU6(inplace=True),
            nn.Conv3d(hidden, cout, 1, bias=False), nn.BatchNorm3d(cout),
        )  # fmt: skip
        self.residual = stride == 1
        self.shortcut = nn.Conv3d(cin, cout, 1, bias=False) if stride == 1 and cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return out + self.shortcut(x) if self.residual else out


def _bottleneck(cin: int, cout: int, repeats: int, stride: int, expansion: int, up: bool = False) -> nn.Sequential:
    blocks = [InvertedResidual(cin, cout, stride, expansion, up)]
    blocks += [InvertedResidual(cout, cout, 1, expansion, up) for _ in range(repeats - 1)]
    return nn.Sequential(*blocks)


class MobileUNet3D(nn.Module):
    """MobileNetV2 encoder to 1/32, inverted-residual decoder with additive skips, full-resolution 1x1x1 head."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: Sequence[int] = _DEFAULT_CHANNELS,
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        c = list(channels)
        self.deep_supervision = deep_supervision
        self.stem = nn.Sequential(
            nn.Conv3d(in_channels, in_channels, 3, 2, 1, groups=in_channels),
            nn.BatchNorm3d(in_channels),
            nn.ReLU6(inplace=True),
            nn.Conv3d(in_channels, c[0], 1),
        )
        widths = [c[0]] + [c[i] for i, *_ in _BOTTLENECKS]
        self.encoder = nn.ModuleList(
            _bottleneck(widths[j], widths[j + 1], n, s, t) for j, (_, n, s, t) in enumerate(_BOTTLENECKS)
        )
        self.expand = nn.Conv3d(c[7], c[8], 1)
        # decoder: 1/32 -> 1/16 (+ 96-wide), 1/8 (+ 32), 1/4 (+ 24), 1/2 (+ 16)
        self.decoder = nn.ModuleList(
            _bottleneck(cin, cout, 1, 2, _EXPANSION, up=True)
            for cin, cout in ((c[8], c[5]), (c[5], c[3]), (c[3], c[2]), (c[2], c[1]))
        )
        self.up = nn.ConvTranspose3d(c[1], c[1], 4, 2, 1, groups=c[1], bias=False)
        self.head = nn.Conv3d(c[1], num_classes, 1)
        decoder_channels = [c[1], c[2], c[3]]  # the decoder sums at 1/2, 1/4, 1/8
        self.heads = nn.ModuleList(nn.Conv3d(w, num_classes, 1) for w in decoder_channels) if deep_supervision else None
        self.feature_channels = [c[1], *decoder_channels] if deep_supervision else [c[1]]
        kaiming_fan_out_init(self)

    def forward(self, x: Tensor) -> SegOutput:
        x = self.stem(x)
        skips = []  # the encoder outputs at 1/2 (16), 1/4 (24), 1/8 (32) and 1/16 (96)
        for i, stage in enumerate(self.encoder):
            x = stage(x)
            if i in (0, 1, 2, 4):
                skips.append(x)
        x = self.expand(x)
        decoded = []
        for stage, skip in zip(self.decoder, reversed(skips)):
            x = stage(x) + skip
            decoded.append(x)
        full = self.up(x)
        logits = [self.head(full)]
        if self.heads is None:
            return SegOutput(logits, [full])
        features = decoded[::-1][:3]  # 1/2, 1/4, 1/8
        logits += [head(f) for head, f in zip(self.heads, features)]
        return SegOutput(logits, [full, *features])


@register_model(
    "mobile_unet3d",
    description="ACF-BCKD's 3D Mobile U-Net student (MobileNetV2 encoder to 1/32, inverted-residual decoder), "
    "13.65 M params",
    reference="ACF-BCKD seg/models/nets/mobile_unet.py, from github.com/lafith/Mobile-UNet (MobileNetV2: Sandler et "
    "al., CVPR 2018)",
    default_patch=_PATCH,
    stride=32,
)
def mobile_unet3d(
    in_channels: int = 1,
    num_classes: int = 17,
    channels: Sequence[int] | None = None,
    base_channels: int | None = None,
    deep_supervision: bool = True,
) -> MobileUNet3D:
    """ACF-BCKD's 3D Mobile U-Net, as their configuration builds it.

    Args:
        channels: the nine widths: stem, the seven bottlenecks and the 1x1x1 expansion, default
            [32,16,24,32,64,96,160,320,1280] (MobileNetV2's).
        base_channels: the stem width; every width is scaled by base_channels / 32, rounded down (give channels or
            base_channels, not both).
        deep_supervision: also return 1x1x1-head logits and the decoder features at 1/2, 1/4 and 1/8 (added here;
            their network has one output).
    """
    if channels is not None and base_channels is not None:
        raise ModelError("give either channels=[...] or base_channels=, not both")
    if channels is not None:
        chans = [int(w) for w in channels]
    elif base_channels is not None:
        chans = [w * int(base_channels) // _DEFAULT_CHANNELS[0] for w in _DEFAULT_CHANNELS]
    else:
        chans = list(_DEFAULT_CHANNELS)
    if len(chans) != len(_DEFAULT_CHANNELS) or min(chans) < 1:
        raise ModelError(f"mobile_unet3d needs {len(_DEFAULT_CHANNELS)} positive widths, got {chans}")
    return MobileUNet3D(in_channels, num_classes, chans, deep_supervision)
