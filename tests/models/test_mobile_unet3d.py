"""ACF-BCKD's 3D Mobile U-Net: parameter count against a recount of their code, contract, training at batch 1."""

import pytest
import torch

import models

# their MobileUNet(in_channels=1, num_classes=K) (github.com/605671435/ACF-BCKD seg/models/nets/mobile_unet.py)
ENCODER = [(32, 16, 1, 1, 1), (16, 24, 2, 2, 6), (24, 32, 3, 2, 6), (32, 64, 4, 2, 6), (64, 96, 3, 1, 6),
           (96, 160, 3, 2, 6), (160, 320, 1, 1, 6)]  # fmt: skip  # (in, out, repeats, stride, expansion)
DECODER = [(1280, 96), (96, 32), (32, 24), (24, 16)]  # one stride-2 block each, expansion 6


def _block(cin: int, cout: int, kernel_volume: int, expansion: int) -> tuple[int, int]:
    """Their InvertedResidualBlock: (parameters, of which the 1x1x1 shortcut conv it always builds)."""
    hidden = cin * expansion
    convs = cin * hidden + 2 * hidden + hidden * kernel_volume + 2 * hidden + hidden * cout + 2 * cout
    return convs + cin * cout, cin * cout


def _reference_count(num_classes: int) -> tuple[int, int]:
    """(their parameter count, their shortcut convs that their forward never uses)."""
    total = (27 + 1 + 2) + (32 + 32) + (320 * 1280 + 1280) + 16 * 64 + (16 * num_classes + num_classes)
    unused = 0
    for cin, cout, repeats, stride, expansion in ENCODER:
        for i in range(repeats):
            block_in, block_stride = (cin, stride) if i == 0 else (cout, 1)
            params, shortcut = _block(block_in, cout, 27, expansion)
            total += params
            unused += 0 if block_stride == 1 and block_in != cout else shortcut
    for cin, cout in DECODER:
        params, shortcut = _block(cin, cout, 64, 6)
        total, unused = total + params, unused + shortcut
    return total, unused


@pytest.mark.parametrize(("num_classes", "reference"), [(14, 13_883_132), (17, 13_883_183)])
def test_parameter_count_is_their_recount_less_the_shortcuts_they_never_use(num_classes, reference):
    """13,883,132 at 14 classes (BTCV) is also what instantiating their class gives (docs/model-zoo.md)."""
    with torch.device("meta"):
        model = models.create_model("mobile_unet3d", 1, num_classes, deep_supervision=False)
    total, unused = _reference_count(num_classes)
    assert (total, unused) == (reference, 230_208)
    assert sum(p.numel() for p in model.parameters()) == total - unused


def test_batch_of_one_trains_and_every_parameter_gets_a_gradient():
    """BatchNorm at 1/32 needs more than one voxel for a batch of one: 64^3."""
    model = models.create_model("mobile_unet3d", 1, 3, base_channels=8).train()
    out = model(torch.randn(1, 1, 64, 64, 64))
    assert [tuple(t.shape[2:]) for t in out.logits] == [(64,) * 3, (32,) * 3, (16,) * 3, (8,) * 3]
    assert [t.shape[1] for t in out.features] == model.feature_channels == [4, 4, 6, 8]
    sum(t.square().mean() for t in out.logits).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []


def test_base_channels_scale_every_width_and_conflict_with_channels():
    model = models.create_model("mobile_unet3d", 1, 3, base_channels=8, deep_supervision=False)
    assert model.expand.out_channels == 320 and model.head.in_channels == 4
    with pytest.raises(ValueError, match="either"):
        models.create_model("mobile_unet3d", 1, 3, channels=[8] * 9, base_channels=8)
