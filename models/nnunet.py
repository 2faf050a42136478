"""nnU-Net v2's own ``PlainConvUNet`` (dynamic-network-architectures) with the 3d_fullres topology.

The default topology is what nnU-Net's planner gives for WORD-like abdominal CT (median spacing 3.0 x 0.977 x 0.977
mm, patch 64 x 192 x 160): 6 stages, 32..320 features, kernels [1,3,3] then [3,3,3], strides [1,1,1], [1,2,2],
then [2,2,2] x 4, about 31.1 M parameters at 17 classes. Pass ``spacing=``
and ``plan_patch=`` to re-plan for another dataset, or ``kernel_sizes=``/``strides=``/``features_per_stage=`` to
set a topology directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import Tensor, nn

from models._blocks import heads_output
from models._output import SegOutput
from models._registry import register_model

WORD_SPACING = (3.0, 0.977, 0.977)
WORD_PATCH = (64, 192, 160)


def plan_topology(
    spacing: Sequence[float], patch: Sequence[int], min_feature_map_size: int = 4
) -> tuple[list[list[int]], list[list[int]]]:
    """Kernel sizes and strides per stage, following nnU-Net v2's ``get_pool_and_conv_props``.

    Written out here (about 30 lines) because importing nnunetv2 for one function would pull its whole
    preprocessing stack. An axis is pooled while its feature map is at least twice ``min_feature_map_size`` and its
    spacing is within a factor 2 of the finest; a kernel becomes 3 once its axis is within a factor 2.
    """
    dim = len(spacing)
    cur_spacing, cur_size = [float(s) for s in spacing], [int(p) for p in patch]
    strides, kernels, kernel = [[1] * dim], [], [1] * dim
    while True:
        axes = [i for i in range(dim) if cur_size[i] >= 2 * min_feature_map_size]
        if not axes:
            break
        finest = min(cur_spacing[i] for i in axes)
        axes = [i for i in axes if cur_spacing[i] / finest < 2]
        if not axes or (len(axes) == 1 and cur_size[axes[0]] < 3 * min_feature_map_size):
            break
        kernel = [3 if kernel[d] == 3 or cur_spacing[d] / min(cur_spacing) < 2 else 1 for d in range(dim)]
        stride = [2 if d in axes else 1 for d in range(dim)]
        for d in axes:
            cur_spacing[d] *= 2
            cur_size[d] = math.ceil(cur_size[d] / 2)
        strides.append(stride)
        kernels.append(list(kernel))
    kernels.append([3] * dim)  # bottleneck
    return kernels, strides


class NNUNet(nn.Module):
    """``PlainConvUNet`` whose forward also returns the decoder features feeding each deep-supervision head."""

    def __init__(self, net: PlainConvUNet, features_per_stage: Sequence[int]) -> None:
        super().__init__()
        self.net = net
        self.deep_supervision = net.decoder.deep_supervision
        n_heads = len(features_per_stage) - 1
        self.feature_channels = list(features_per_stage[:n_heads]) if self.deep_supervision else [features_per_stage[0]]

    def forward(self, x: Tensor) -> SegOutput:
        skips = self.net.encoder(x)
        decoder = self.net.decoder
        lres = skips[-1]
        features = []
        for s, stage in enumerate(decoder.stages):  # mirrors UNetDecoder.forward, keeping the features
            lres = stage(torch.cat((decoder.transpconvs[s](lres), skips[-(s + 2)]), 1))
            features.append(lres)
        features.reverse()
        return heads_output(decoder.seg_layers[::-1], features, self.deep_supervision)


@register_model(
    "nnunet",
    description="nnU-Net v2 3d_fullres PlainConvUNet (6 stages, 32..320, InstanceNorm, LeakyReLU), ~31 M params",
    reference="Isensee et al., Nat. Methods 2021; dynamic-network-architectures PlainConvUNet",
    default_patch=WORD_PATCH,
    stride=(16, 32, 32),
)
def nnunet(
    in_channels: int = 1,
    num_classes: int = 17,
    spacing: Sequence[float] = WORD_SPACING,
    plan_patch: Sequence[int] = WORD_PATCH,
    base_channels: int = 32,
    max_channels: int = 320,
    features_per_stage: Sequence[int] | None = None,
    kernel_sizes: Sequence[Sequence[int]] | None = None,
    strides: Sequence[Sequence[int]] | None = None,
    deep_supervision: bool = True,
) -> NNUNet:
    """nnU-Net v2's 3d_fullres network, planned like nnU-Net for the given spacing and patch.

    Args:
        spacing: voxel spacing [z,y,x] in mm the topology is planned for (WORD's median).
        plan_patch: patch [z,y,x] the topology is planned for (nnU-Net's WORD plan).
        base_channels: width of the first stage, doubled at each stage up to ``max_channels``. [paper: 32]
        max_channels: cap on the width of a stage. [paper: 320]
        features_per_stage: explicit width of each stage (overrides base_channels and max_channels).
        kernel_sizes: explicit conv kernel of each stage, e.g. [[1,3,3],[3,3,3],...] (with ``strides``).
        strides: explicit stride of each stage, e.g. [[1,1,1],[1,2,2],...] (with ``kernel_sizes``).
        deep_supervision: also return the coarser decoder heads' logits and features (deep supervision; the
            multi-scale KD methods need them).
    """
    if kernel_sizes is None or strides is None:
        kernel_sizes, strides = plan_topology(spacing, plan_patch)
    n_stages = len(strides)
    if features_per_stage is None:
        features_per_stage = [min(base_channels * 2**i, max_channels) for i in range(n_stages)]
    net = PlainConvUNet(
        input_channels=in_channels,
        n_stages=n_stages,
        features_per_stage=list(features_per_stage),
        conv_op=nn.Conv3d,
        kernel_sizes=[list(k) for k in kernel_sizes],
        strides=[list(s) for s in strides],
        n_conv_per_stage=2,
        num_classes=num_classes,
        n_conv_per_stage_decoder=2,
        conv_bias=True,
        norm_op=nn.InstanceNorm3d,
        norm_op_kwargs={"eps": 1e-5, "affine": True},
        nonlin=nn.LeakyReLU,
        nonlin_kwargs={"inplace": True},
        deep_supervision=deep_supervision,
    )
    net.apply(InitWeights_He(1e-2))
    return NNUNet(net, list(features_per_stage))
