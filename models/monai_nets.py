"""Thin adapters that give MONAI networks the ``SegOutput`` contract (MONAI is imported lazily by each factory).

- ``monai-dynunet`` has deep supervision: the adapter runs DynUNet's blocks itself (as ``models/nnunet.py`` does
  for PlainConvUNet), so its heads see the decoder features at their native resolution (DynUNet's own forward
  interpolates them to full resolution and stacks them, and only in training mode). Default topology: nnU-Net's plan
  for WORD-like CT (``models.nnunet.plan_topology``); MONAI's decoder kernels are shifted one level from nnU-Net's
  31,162,705 parameters at 17 classes without deep supervision.
- The others have no deep supervision and return one scale whatever ``deep_supervision`` says (the argument is
  accepted so that every factory takes it): the logits and the feature map that enters the network's output
  block, captured with a forward pre-hook, at full resolution like the logits. For ``monai-unet`` that is the
  output of the top transposed conv (its output block is a conv-only residual unit), so it has ``num_classes``
  channels; for the others it is the last decoder feature (BasicUNet 32, SegResNet ``init_filters``, UNETR and
  Swin-UNETR ``feature_size`` channels).
- ``monai-unetr`` is built for one input size (``patch``, default 64 x 128 x 128) and accepts no other;
  ``monai-swinunetr`` accepts any size divisible by 32 (MONAI >= 1.5 dropped its ``img_size`` argument), and
  ``patch`` is only checked.
Default configurations are those measured in model-zoo.md §2.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

from torch import Tensor, nn

from models._blocks import resolve_channels
from models._errors import ModelError
from models._output import SegOutput
from models._registry import register_model
from models.nnunet import WORD_PATCH, WORD_SPACING, plan_topology

INSTALL_HINT = "pip install 'segkd-bench[monai]'"
_PATCH = (64, 128, 128)


class MonaiMissingError(ModuleNotFoundError):
    """MONAI is not installed; raised by the ``monai-*`` factories with an install hint."""


def _monai_nets(model: str) -> ModuleType:
    try:
        from monai.networks import nets
    except ImportError as err:
        raise MonaiMissingError(f"model {model!r} needs MONAI, which is not installed: {INSTALL_HINT}") from err
    return nets


class MonaiSingleScale(nn.Module):
    """A MONAI network returning logits, plus the input of ``feature_module`` (a submodule name) as the feature."""

    def __init__(
        self,
        net: nn.Module,
        feature_module: str,
        feature_channels: int,
        input_size: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.deep_supervision = False
        self.feature_channels = [feature_channels]
        self.input_size = tuple(input_size) if input_size is not None else None
        self.feature_module = feature_module
        self._feature: Tensor | None = None
        net.get_submodule(feature_module).register_forward_pre_hook(self._keep_feature)

    def _keep_feature(self, module: nn.Module, args: tuple[Tensor, ...]) -> None:
        self._feature = args[0]

    def forward(self, x: Tensor) -> SegOutput:
        if self.input_size is not None and tuple(x.shape[2:]) != self.input_size:
            raise ModelError(f"this network was built for input size {self.input_size}, got {tuple(x.shape[2:])}")
        logits = self.net(x)
        feature, self._feature = self._feature, None
        return SegOutput([logits], [feature])


class MonaiDynUNet(nn.Module):
    """DynUNet whose forward returns native-resolution deep-supervision logits and the decoder features."""

    def __init__(self, net: nn.Module, filters: Sequence[int]) -> None:
        super().__init__()
        self.net = net
        self.deep_supervision = net.deep_supervision
        n_heads = 1 + (net.deep_supr_num if self.deep_supervision else 0)
        self.feature_channels = list(filters[:n_heads])

    def forward(self, x: Tensor) -> SegOutput:
        net = self.net
        skips = [net.input_block(x)]
        for down in net.downsamples:
            skips.append(down(skips[-1]))
        y = net.bottleneck(skips[-1])
        features = []
        for up, skip in zip(net.upsamples, reversed(skips)):  # mirrors DynUNetSkipLayer, keeping the features
            y = up(y, skip)
            features.append(y)
        features.reverse()
        logits = [net.output_block(features[0])]
        if self.deep_supervision:
            logits += [head(f) for head, f in zip(net.deep_supervision_heads, features[1:])]
        return SegOutput(logits, features[: len(logits)])


@register_model(
    "monai-unet",
    description="MONAI UNet (16..256, strides 2, 2 residual units, BatchNorm), 4.83 M params at 17 classes",
    reference="Kerfoot et al., STACOM 2018; monai.networks.nets.UNet",
    default_patch=_PATCH,
    stride=16,
    extra="monai",
)
def monai_unet(
    in_channels: int = 1,
    num_classes: int = 17,
    channels: Sequence[int] | None = None,
    base_channels: int | None = None,
    num_res_units: int = 2,
    deep_supervision: bool = True,
) -> MonaiSingleScale:
    """``num_res_units`` must be >= 1 (the full-resolution feature is the input of the top residual unit)."""
    nets = _monai_nets("monai-unet")
    if num_res_units < 1:
        raise ModelError(f"monai-unet: num_res_units must be >= 1, got {num_res_units}")
    chans = resolve_channels(channels, base_channels, (16, 32, 64, 128, 256), (1, 2, 4, 8, 16))
    net = nets.UNet(3, in_channels, num_classes, chans, (2,) * (len(chans) - 1), num_res_units=num_res_units,
                    norm="BATCH")  # fmt: skip
    return MonaiSingleScale(net, "model.2.1", num_classes)


@register_model(
    "monai-basicunet",
    description="MONAI BasicUNet (32,32,64,128,256,32; InstanceNorm, LeakyReLU), 5.75 M params at 17 classes",
    reference="Falk et al., Nat. Methods 2019 (U-Net); monai.networks.nets.BasicUNet",
    default_patch=_PATCH,
    stride=16,
    extra="monai",
)
def monai_basicunet(
    in_channels: int = 1,
    num_classes: int = 17,
    channels: Sequence[int] | None = None,
    base_channels: int | None = None,
    deep_supervision: bool = True,
) -> MonaiSingleScale:
    """``channels``: BasicUNet's six ``features`` (encoder 5, last decoder 1)."""
    nets = _monai_nets("monai-basicunet")
    chans = resolve_channels(channels, base_channels, (32, 32, 64, 128, 256, 32), (1, 1, 2, 4, 8, 1))
    net = nets.BasicUNet(3, in_channels, num_classes, features=chans)
    return MonaiSingleScale(net, "final_conv", chans[5])


@register_model(
    "monai-segresnet",
    description="MONAI SegResNet (init_filters 16, blocks 1-2-2-4 / 1-1-1, GroupNorm), 4.70 M params at 17 classes",
    reference="Myronenko, BrainLes 2018, arXiv:1810.11654; monai.networks.nets.SegResNet",
    default_patch=_PATCH,
    stride=8,
    extra="monai",
)
def monai_segresnet(
    in_channels: int = 1,
    num_classes: int = 17,
    base_channels: int = 16,
    deep_supervision: bool = True,
) -> MonaiSingleScale:
    """``base_channels``: SegResNet's ``init_filters`` (a multiple of its 8 GroupNorm groups)."""
    nets = _monai_nets("monai-segresnet")
    if base_channels % 8:
        raise ModelError(f"monai-segresnet: base_channels must be a multiple of 8, got {base_channels}")
    net = nets.SegResNet(3, base_channels, in_channels, num_classes)
    return MonaiSingleScale(net, "conv_final", base_channels)


@register_model(
    "monai-dynunet",
    description="MONAI DynUNet with nnU-Net's WORD topology (6 stages, 32..320), 31.2 M params at 17 classes",
    reference="Isensee et al., Nat. Methods 2021; monai.networks.nets.DynUNet",
    default_patch=WORD_PATCH,
    stride=(16, 32, 32),
    extra="monai",
)
def monai_dynunet(
    in_channels: int = 1,
    num_classes: int = 17,
    filters: Sequence[int] | None = None,
    kernel_sizes: Sequence[Sequence[int]] | None = None,
    strides: Sequence[Sequence[int]] | None = None,
    deep_supervision: bool = True,
) -> MonaiDynUNet:
    """Topology as ``nnunet`` (``filters`` = features per stage); all deep-supervision heads when enabled."""
    nets = _monai_nets("monai-dynunet")
    if kernel_sizes is None or strides is None:
        kernel_sizes, strides = plan_topology(WORD_SPACING, WORD_PATCH)
    n_stages = len(strides)
    if filters is None:
        filters = [min(32 * 2**i, 320) for i in range(n_stages)]
    net = nets.DynUNet(
        3, in_channels, num_classes, [list(k) for k in kernel_sizes], [list(s) for s in strides],
        [list(s) for s in strides[1:]], filters=list(filters), deep_supervision=deep_supervision,
        deep_supr_num=max(1, n_stages - 2),
    )  # fmt: skip
    return MonaiDynUNet(net, list(filters))


@register_model(
    "monai-unetr",
    description="MONAI UNETR (ViT-B on 16^3 patches, feature_size 16), 92.8 M params at 64x128x128, 17 classes",
    reference="Hatamizadeh et al., WACV 2022, arXiv:2103.10504; monai.networks.nets.UNETR",
    default_patch=_PATCH,
    stride=16,
    extra="monai",
)
def monai_unetr(
    in_channels: int = 1,
    num_classes: int = 17,
    patch: Sequence[int] = _PATCH,
    feature_size: int = 16,
    hidden_size: int = 768,
    mlp_dim: int = 3072,
    num_heads: int = 12,
    deep_supervision: bool = True,
) -> MonaiSingleScale:
    """``patch``: the only input size the network accepts (each side a multiple of 16)."""
    nets = _monai_nets("monai-unetr")
    patch = tuple(int(p) for p in patch)
    if len(patch) != 3 or any(p < 16 or p % 16 for p in patch):
        raise ModelError(f"monai-unetr: patch must be three multiples of 16, got {patch}")
    net = nets.UNETR(
        in_channels, num_classes, patch, feature_size=feature_size, hidden_size=hidden_size, mlp_dim=mlp_dim,
        num_heads=num_heads, proj_type="perceptron",
    )  # fmt: skip
    return MonaiSingleScale(net, "out", feature_size, input_size=patch)


@register_model(
    "monai-swinunetr",
    description="MONAI Swin-UNETR (feature_size 48, window 7, depths 2-2-2-2), 62.2 M params at 17 classes",
    reference="Hatamizadeh et al., BrainLes 2021, arXiv:2201.01266; monai.networks.nets.SwinUNETR",
    default_patch=_PATCH,
    stride=32,
    extra="monai",
)
def monai_swinunetr(
    in_channels: int = 1,
    num_classes: int = 17,
    patch: Sequence[int] = _PATCH,
    feature_size: int = 48,
    window_size: int = 7,
    deep_supervision: bool = True,
) -> MonaiSingleScale:
    """``patch`` is checked (each side a multiple of 32); ``feature_size`` must be a multiple of 12."""
    nets = _monai_nets("monai-swinunetr")
    patch = tuple(int(p) for p in patch)
    if len(patch) != 3 or any(p < 32 or p % 32 for p in patch):
        raise ModelError(f"monai-swinunetr: patch must be three multiples of 32, got {patch}")
    net = nets.SwinUNETR(in_channels, num_classes, feature_size=feature_size, window_size=window_size)
    return MonaiSingleScale(net, "out", feature_size)
