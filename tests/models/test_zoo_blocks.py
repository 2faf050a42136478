"""Building blocks and constructor checks of the hand-written zoo networks."""

import pytest
import torch
from torch import nn

import models
from models.dmfnet import FiberUnit
from models.espnet3d import ESPBlock
from models.hdcnet import HDCModule, space_to_depth


def test_space_to_depth_keeps_every_voxel_in_its_phase_channel():
    x = torch.arange(2 * 4 * 6 * 8, dtype=torch.float32).reshape(1, 2, 4, 6, 8)
    y = space_to_depth(x)
    assert y.shape == (1, 16, 2, 3, 4)
    for c in range(2):
        for a in range(2):
            for b in range(2):
                for w in range(2):
                    assert torch.equal(y[:, c * 8 + a * 4 + b * 2 + w], x[:, c, a::2, b::2, w::2])


def test_hdcnet_first_conv_takes_eight_channels_per_input_channel():
    assert models.create_model("hdcnet", 1, 17).stem[0].in_channels == 8
    assert models.create_model("hdcnet", 4, 4).stem[0].in_channels == 32  # the authors' 4-channel MRI setting


def test_hdc_module_projects_a_wider_input_for_the_residual():
    module = HDCModule(16, 8)
    assert isinstance(module.project, nn.Sequential)
    assert module(torch.randn(2, 16, 4, 4, 4)).shape == (2, 8, 4, 4, 4)
    assert isinstance(HDCModule(8, 8).project, nn.Identity)
    with pytest.raises(ValueError, match="divisible by 4"):
        HDCModule(8, 6)


def test_dilated_fiber_unit_fuses_three_dilations_with_learnable_weights():
    unit = FiberUnit(8, 8, groups=4, dilations=(1, 2, 3))
    assert [b[2].dilation for b in unit.branches] == [(1, 1, 1), (2, 2, 2), (3, 3, 3)]
    assert [b[2].padding for b in unit.branches] == [(1, 1, 1), (2, 2, 2), (3, 3, 3)]
    assert unit.in_plane[2].kernel_size == (1, 3, 3)  # the authors' in-plane 3x3x1 in [D, H, W] order
    x = torch.randn(2, 8, 6, 6, 6)
    unit(x).sum().backward()
    assert unit.weights.grad is not None and unit.weights.grad.abs().sum() > 0
    assert FiberUnit(8, 8, groups=4).weights is None


def test_strided_fiber_unit_uses_a_2x2x2_projection_shortcut():
    unit = FiberUnit(8, 16, groups=4, stride=2)
    assert unit.shortcut[2].kernel_size == (2, 2, 2) and unit.shortcut[2].stride == (2, 2, 2)
    assert unit(torch.randn(2, 8, 8, 8, 8)).shape == (2, 16, 4, 4, 4)


def test_dmfnet_rejects_widths_not_divisible_by_the_fibre_count():
    with pytest.raises(ValueError, match="divisible by groups=4"):
        models.create_model("dmfnet", 1, 3, channels=[8, 18], groups=4)


def test_esp_block_splits_output_channels_unevenly_when_needed():
    block = ESPBlock(8, 10)
    assert [b.out_channels for b in block.branches] == [4, 2, 2, 2]
    assert [b.dilation for b in block.branches] == [(1, 1, 1), (1, 1, 1), (2, 2, 2), (2, 2, 2)]
    assert block(torch.randn(2, 8, 6, 6, 6)).shape == (2, 10, 6, 6, 6)


def test_espnet_accepts_sides_not_divisible_by_eight():
    model = models.create_model("espnet3d", 1, 3, channels=[4, 8, 8, 16]).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, 20, 28, 36))
    assert out.main.shape == (1, 3, 20, 28, 36)


def test_cicek_unet_has_affine_free_batchnorm_and_bias_free_up_convolutions():
    model = models.create_model("unet3d-cicek", 3, 3, base_channels=4, deep_supervision=False)
    assert all(not m.affine for m in model.modules() if isinstance(m, nn.BatchNorm3d))
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.ConvTranspose3d))
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv3d))


def test_registry_metadata_names_reference_and_stride_for_each_zoo_network():
    expected_stride = {"dmfnet": 16, "mfnet": 16, "espnet3d": 8, "hdcnet": 16, "unet3d-cicek": 8}
    for name, stride in expected_stride.items():
        info = models.model_info(name)
        assert info.stride == (stride,) * 3
        assert info.reference and info.description
        assert all(p % stride == 0 for p in info.default_patch)
    assert "classes" in models.model_info("espnet3d").description
