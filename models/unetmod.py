"""The tiny student and the ResU-Net teacher of the ACF-BCKD benchmark (Yu et al., Expert Systems with Applications
262:125670, 2025): ``UNetMod``, their copy of MONAI's ``UNet`` with the decoder unrolled so that deep-supervision
heads can read it (github.com/605671435/ACF-BCKD ``seg/models/unet/monai_unet_mod.py``).

Four levels, total stride 8 ("d8"): a stride-2 3x3x3 conv (or residual unit) per encoder level, a stride-1 bottom
layer, and per decoder level the concatenation [decoder, skip] into a stride-2 3x3x3 transposed conv; every conv has
a bias, is followed by InstanceNorm (no affine parameters) and a single-parameter PReLU, except the top one.

- ``unetmod_tiny_d8`` (their student "U-Net"): channels (32, 64, 128, 256), no residual units; the top transposed
  conv gives the logits directly (``conv_only``), so its full-resolution feature *is* the logits
  (``feature_channels[0] == num_classes``).
- ``unetmod_base_d8`` (their teacher "T1: ResU-Net"): channels (64, 128, 256, 512), residual units of 2 subunits in
  the encoder, a 1-subunit residual unit after each transposed conv; the top one ends in a plain conv, and the
  feature is that unit's input (``num_classes`` channels), as for ``monai-unet``.

The same modules as MONAI's ``UNet`` with the same arguments, so the parameter counts equal MONAI's
(``tests/models/test_unetmod.py``). With ``deep_supervision=True`` the three heads of their ``do_ds=True`` read the
decoder at 1/2 (``channels[0]``), 1/4 (``channels[1]``) and the 1/8 concatenation (``channels[2] + channels[3]``),
1x1x1 convs with bias. MONAI's Dropout(0.0) layers are left out (no parameters, no effect).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from models._blocks import kaiming_fan_out_init, resolve_channels
from models._errors import ModelError
from models._output import SegOutput
from models._registry import register_model

_PATCH = (96, 96, 96)  # ACF-BCKD's 96^3 training patch (configs/_base_/datasets/synapse.py, word.py)


def _conv(cin: int, cout: int, stride: int, conv_only: bool = False, transposed: bool = False) -> nn.Sequential:
    """MONAI ``Convolution``: 3x3x3 conv with bias, then InstanceNorm and PReLU unless ``conv_only``."""
    if transposed:
        conv: nn.Module = nn.ConvTranspose3d(cin, cout, 3, stride, padding=1, output_padding=stride - 1)
    else:
        conv = nn.Conv3d(cin, cout, 3, stride, padding=1)
    return nn.Sequential(conv) if conv_only else nn.Sequential(conv, nn.InstanceNorm3d(cout), nn.PReLU())


class ResidualUnit(nn.Module):
    """MONAI ``ResidualUnit``: ``subunits`` convs (the first strided) plus a residual path.

    The residual path is the identity when shape is kept, else a conv with bias (3x3x3 with the stride, or 1x1x1 when
    only the channels change).
    """

    def __init__(self, cin: int, cout: int, stride: int, subunits: int, last_conv_only: bool = False) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            *(
                _conv(cin if i == 0 else cout, cout, stride if i == 0 else 1, last_conv_only and i == subunits - 1)
                for i in range(subunits)
            )
        )
        if stride != 1:
            self.residual: nn.Module = nn.Conv3d(cin, cout, 3, stride, padding=1)
        elif cin != cout:
            self.residual = nn.Conv3d(cin, cout, 1)
        else:
            self.residual = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.convs(x) + self.residual(x)


class UNetMod(nn.Module):
    """MONAI's 4-level UNet, unrolled: decoder features at 1/8, 1/4, 1/2 and full resolution."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: Sequence[int],
        num_res_units: int,
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        c0, c1, c2, c3 = channels
        self.deep_supervision = deep_supervision

        def down(cin: int, cout: int, stride: int) -> nn.Module:
            return ResidualUnit(cin, cout, stride, num_res_units) if num_res_units else _conv(cin, cout, stride)

        def up(cin: int, cout: int) -> nn.Module:
            conv = _conv(cin, cout, 2, transposed=True)
            return nn.Sequential(conv, ResidualUnit(cout, cout, 1, 1)) if num_res_units else conv

        self.downs = nn.ModuleList([down(in_channels, c0, 2), down(c0, c1, 2), down(c1, c2, 2)])
        self.bottom = down(c2, c3, 1)
        self.ups = nn.ModuleList([up(c2 + c3, c1), up(2 * c1, c0)])
        # the top level: a transposed conv to class space, then (with residual units) a unit ending in a plain conv
        self.top_up = _conv(2 * c0, num_classes, 2, conv_only=not num_res_units, transposed=True)
        self.top_out = ResidualUnit(num_classes, num_classes, 1, 1, last_conv_only=True) if num_res_units else None
        decoder_channels = [c0, c1, c2 + c3]  # the decoder at 1/2, 1/4, 1/8
        self.heads = nn.ModuleList(nn.Conv3d(c, num_classes, 1) for c in decoder_channels) if deep_supervision else None
        self.feature_channels = [num_classes, *decoder_channels] if deep_supervision else [num_classes]
        kaiming_fan_out_init(self)

    def forward(self, x: Tensor) -> SegOutput:
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        f8 = torch.cat([self.bottom(x), skips[2]], dim=1)
        f4 = self.ups[0](f8)
        f2 = self.ups[1](torch.cat([f4, skips[1]], dim=1))
        top = self.top_up(torch.cat([f2, skips[0]], dim=1))
        logits = top if self.top_out is None else self.top_out(top)
        if self.heads is None:
            return SegOutput([logits], [top])
        features = [f2, f4, f8]
        return SegOutput([logits, *(head(f) for head, f in zip(self.heads, features))], [top, *features])


def _build(
    name: str,
    in_channels: int,
    num_classes: int,
    channels: Sequence[int] | None,
    base_channels: int | None,
    default: tuple[int, int, int, int],
    num_res_units: int,
    deep_supervision: bool,
) -> UNetMod:
    chans = resolve_channels(channels, base_channels, default, (1, 2, 4, 8))
    if num_res_units < 0:
        raise ModelError(f"{name}: num_res_units must be >= 0, got {num_res_units}")
    return UNetMod(in_channels, num_classes, chans, num_res_units, deep_supervision)


@register_model(
    "unetmod_tiny_d8",
    description="ACF-BCKD's student U-Net (MONAI UNet 32..256, stride 8, no residual units), 1.97 M params at 17 cls",
    reference="Yu et al., ESWA 2025; github.com/605671435/ACF-BCKD configs/unet/unetmod_tiny_d8_*.py",
    default_patch=_PATCH,
    stride=8,
)
def unetmod_tiny_d8(
    in_channels: int = 1,
    num_classes: int = 17,
    channels: Sequence[int] | None = None,
    base_channels: int | None = None,
    num_res_units: int = 0,
    deep_supervision: bool = True,
) -> UNetMod:
    """ACF-BCKD's tiny U-Net, as their configuration builds it.

    Args:
        channels: widths of the four levels, default [32,64,128,256] (their configuration).
        base_channels: width of the first level, the others 2, 4 and 8 times it (give channels or base_channels, not
            both).
        num_res_units: MONAI residual subunits per encoder level (their configuration: 0, plain convs). [paper: 0]
        deep_supervision: also return 1x1x1-head logits and the decoder features at 1/2, 1/4 and 1/8 (their
            ``do_ds=True`` heads; their benchmark configuration trains without them). [paper: false]
    """
    return _build(
        "unetmod_tiny_d8", in_channels, num_classes, channels, base_channels, (32, 64, 128, 256), num_res_units,
        deep_supervision,
    )  # fmt: skip


@register_model(
    "unetmod_base_d8",
    description="ACF-BCKD's ResU-Net teacher (MONAI UNet 64..512, stride 8, 2 residual units), 19.0 M params at 17",
    reference="Yu et al., ESWA 2025; github.com/605671435/ACF-BCKD configs/unet/unetmod_base_d8_*.py",
    default_patch=_PATCH,
    stride=8,
)
def unetmod_base_d8(
    in_channels: int = 1,
    num_classes: int = 17,
    channels: Sequence[int] | None = None,
    base_channels: int | None = None,
    num_res_units: int = 2,
    deep_supervision: bool = True,
) -> UNetMod:
    """ACF-BCKD's ResU-Net teacher ("T1"), as their configuration builds it.

    Args:
        channels: widths of the four levels, default [64,128,256,512] (their configuration).
        base_channels: width of the first level, the others 2, 4 and 8 times it (give channels or base_channels, not
            both).
        num_res_units: MONAI residual subunits per encoder level (their configuration: 2). [paper: 2]
        deep_supervision: also return 1x1x1-head logits and the decoder features at 1/2, 1/4 and 1/8 (their
            ``do_ds=True`` heads; their benchmark configuration trains without them). [paper: false]
    """
    return _build(
        "unetmod_base_d8", in_channels, num_classes, channels, base_channels, (64, 128, 256, 512), num_res_units,
        deep_supervision,
    )  # fmt: skip
