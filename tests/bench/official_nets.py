"""The official LCOV-Net and U-Net, re-implemented here only to produce their state dicts and logits in tests.

Written from HiLab-git/LCOVNet-and-KD @ d861bf7 ``pymic/net/net3d/lcovnet.py::LCOV_Net`` (= PyMIC 0.6.2
``pymic/net/net3d/lcovnet.py::LCOVNet``) and ``pymic/net/net3d/unet_kd.py::UNet_KD``: the same class structure,
attribute names and forward passes (decoders concatenate ``[up, skip]``; ``UnetBlock_Up`` registers its convolution
twice, as ``conv`` and ``conv1``; ``down2`` pools three times), with the widths, input channels and class count as
arguments instead of the hard-coded ``[32, 64, 128, 256, 256]``, one input channel and 17 classes, so that the tests
run at a small width. Independent of ``bench.official_weights`` on purpose: the tests compare the two.
"""

import torch
from torch import nn


def conv_bn_act(conv: nn.Module, channels: int, act: type[nn.Module], dropout: bool = True) -> nn.Sequential:
    """The official blocks' ``Sequential(conv, BatchNorm3d, activation[, Dropout(0.2)])``, whose indices name the
    state-dict keys (``conv1.0.weight``, ``conv1.1.running_mean``)."""
    layers = [conv, nn.BatchNorm3d(channels), act(inplace=True)]
    return nn.Sequential(*layers, nn.Dropout(p=0.2)) if dropout else nn.Sequential(*layers)


class _LCOVAttentionBlock(nn.Module):
    """What both lcovnet.py encoder blocks share: ``conv1``, then ``conv2_1(x) + sigmoid(conv2_2(x)) * x``; they
    differ in ``conv2_1``'s groups and in the gate ``conv2_2``."""

    def __init__(self, in_channels, out_channel, groups, gate):
        super().__init__()
        self.conv1 = conv_bn_act(
            nn.Conv3d(in_channels, out_channel, kernel_size=(1, 1, 3), padding=(0, 0, 1)),
            out_channel,
            nn.ReLU6,
            dropout=False,
        )
        self.conv2_1 = conv_bn_act(
            nn.Conv3d(out_channel, out_channel, kernel_size=(3, 3, 1), padding=(1, 1, 0), groups=groups),
            out_channel,
            nn.ReLU6,
        )
        self.conv2_2 = gate

    def forward(self, x):
        x = self.conv1(x)
        x1 = self.conv2_1(x)
        x2 = torch.sigmoid(self.conv2_2(x))
        return x1 + x2 * x


class LCOVUnetBlockEncode(_LCOVAttentionBlock):
    """``UnetBlock_Encode`` of lcovnet.py (LACB-H): a dense ``conv2_1`` and a pooled gate."""

    def __init__(self, in_channels, out_channel):
        gate = nn.Sequential(
            nn.AvgPool3d(kernel_size=4, stride=2, padding=1),
            nn.Conv3d(out_channel, out_channel, kernel_size=1, padding=0),
            nn.BatchNorm3d(out_channel),
            nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False),
        )
        super().__init__(in_channels, out_channel, 1, gate)


class LCOVUnetBlockEncodeBottleNeck(_LCOVAttentionBlock):
    """``UnetBlock_Encode_BottleNeck`` of lcovnet.py (LACB-L): a depthwise ``conv2_1`` and a point-wise gate."""

    def __init__(self, in_channels, out_channel):
        gate = conv_bn_act(nn.Conv3d(out_channel, out_channel, kernel_size=1, padding=0), out_channel, nn.ReLU6)
        super().__init__(in_channels, out_channel, out_channel, gate)


class UnetBlockDown(nn.Module):
    """``UnetBlock_Down`` (max pooling, in lcovnet.py under the name ``avg_pool``)."""

    def __init__(self):
        super().__init__()
        self.avg_pool = nn.MaxPool3d(kernel_size=2, stride=2)

    def forward(self, x):
        return self.avg_pool(x)


class LCOVUnetBlockUp(nn.Module):
    """``UnetBlock_Up`` of lcovnet.py: one Sequential registered as ``conv`` and ``conv1``."""

    def __init__(self, in_channels, out_channel):
        super().__init__()
        self.conv = self.conv1 = conv_bn_act(
            nn.Conv3d(in_channels, out_channel, kernel_size=1, padding=0, groups=1), out_channel, nn.ReLU6
        )
        self.up = nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)

    def forward(self, x):
        return self.up(self.conv(x))


class OfficialUNetLayout(nn.Module):
    """The layout both official networks share: ``Encode_block1-4``, ``Encode_BottleNeck_block5``, ``up1-4``,
    ``Decode_block1-4``, ``segout1-4`` (coarsest first), and their forward pass."""

    def __init__(self, encode, bottleneck, up, in_chns, ft_chns, n_class):
        super().__init__()
        c = ft_chns
        self.Encode_block1 = encode(in_chns, c[0])
        self.down1 = UnetBlockDown()
        self.Encode_block2 = encode(c[0], c[1])
        self.down2 = UnetBlockDown()
        self.Encode_block3 = encode(c[1], c[2])
        self.down3 = UnetBlockDown()
        self.Encode_block4 = encode(c[2], c[3])
        self.down4 = UnetBlockDown()
        self.Encode_BottleNeck_block5 = bottleneck(c[3], c[4])
        self.up1 = up(c[4], c[3])
        self.Decode_block1 = encode(c[3] * 2, c[3])
        self.segout1 = nn.Conv3d(c[3], n_class, kernel_size=1, padding=0)
        self.up2 = up(c[3], c[2])
        self.Decode_block2 = encode(c[2] * 2, c[2])
        self.segout2 = nn.Conv3d(c[2], n_class, kernel_size=1, padding=0)
        self.up3 = up(c[2], c[1])
        self.Decode_block3 = encode(c[1] * 2, c[1])
        self.segout3 = nn.Conv3d(c[1], n_class, kernel_size=1, padding=0)
        self.up4 = up(c[1], c[0])
        self.Decode_block4 = encode(c[0] * 2, c[0])
        self.segout4 = nn.Conv3d(c[0], n_class, kernel_size=1, padding=0)

    def forward(self, x):
        """The four logits, full resolution first (the official ``[segout4, segout3, segout2, segout1]``)."""
        _x1 = self.Encode_block1(x)
        x1 = self.down1(_x1)
        _x2 = self.Encode_block2(x1)
        x2 = self.down2(_x2)
        _x3 = self.Encode_block3(x2)
        x3 = self.down2(_x3)
        _x4 = self.Encode_block4(x3)
        x4 = self.down2(_x4)
        x5 = self.Encode_BottleNeck_block5(x4)
        x6 = self.Decode_block1(torch.cat((self.up1(x5), _x4), dim=1))
        x7 = self.Decode_block2(torch.cat((self.up2(x6), _x3), dim=1))
        x8 = self.Decode_block3(torch.cat((self.up3(x7), _x2), dim=1))
        x9 = self.Decode_block4(torch.cat((self.up4(x8), _x1), dim=1))
        return [self.segout4(x9), self.segout3(x8), self.segout2(x7), self.segout1(x6)]


def official_lcovnet(in_chns: int, ft_chns: list[int], n_class: int) -> nn.Module:
    return OfficialUNetLayout(LCOVUnetBlockEncode, LCOVUnetBlockEncodeBottleNeck, LCOVUnetBlockUp, in_chns, ft_chns,
                              n_class)  # fmt: skip


class UNetKDBlockEncode(nn.Module):
    """``UnetBlock_Encode`` of unet_kd.py: two 3x3x3 conv-BN-ReLU-Dropout."""

    def __init__(self, in_channels, out_channel):
        super().__init__()
        self.conv1 = conv_bn_act(nn.Conv3d(in_channels, out_channel, kernel_size=3, padding=1), out_channel, nn.ReLU)
        self.conv2 = conv_bn_act(nn.Conv3d(out_channel, out_channel, kernel_size=3, padding=1), out_channel, nn.ReLU)

    def forward(self, x):
        return self.conv2(self.conv1(x))


class UNetKDBlockUp(nn.Module):
    """``UnetBlock_Up`` of unet_kd.py: 2x2x2 transposed conv-BN-ReLU-Dropout."""

    def __init__(self, in_channels, out_channel):
        super().__init__()
        self.up = conv_bn_act(
            nn.ConvTranspose3d(in_channels, out_channel, kernel_size=2, stride=2), out_channel, nn.ReLU
        )

    def forward(self, x):
        return self.up(x)


def official_unet(in_chns: int, ft_chns: list[int], n_class: int) -> nn.Module:
    return OfficialUNetLayout(UNetKDBlockEncode, UNetKDBlockEncode, UNetKDBlockUp, in_chns, ft_chns, n_class)


def randomize_batch_norms(net: nn.Module) -> nn.Module:
    """Random running statistics and affine parameters, so that a BatchNorm loaded under the wrong name shows."""
    for module in net.modules():
        if isinstance(module, nn.BatchNorm3d):
            with torch.no_grad():
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.normal_(1, 0.2)
                module.bias.normal_(0, 0.2)
    return net
