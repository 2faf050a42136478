"""The paper's networks: exact parameter counts, output contract and widths."""

import pytest
import torch

import models
from models.nnunet import plan_topology


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "expected"),
    [("lcovnet", 2_785_764), ("unet3d", 14_986_660), ("nnunet", 31_125_173)],
)
def test_parameter_count_matches_reference_at_17_classes(name, expected):
    assert _params(models.create_model(name, in_channels=1, num_classes=17)) == expected


@pytest.mark.parametrize(
    ("name", "kwargs", "shape"),
    [
        ("lcovnet", {"base_channels": 4}, (32, 32, 32)),
        ("unet3d", {"base_channels": 4}, (32, 32, 32)),
        ("nnunet", {"features_per_stage": [4, 8, 8, 8, 8, 8]}, (32, 64, 64)),
    ],
)
def test_deep_supervision_outputs_and_feature_channels_match_real_tensors(name, kwargs, shape):
    model = models.create_model(name, in_channels=2, num_classes=3, **kwargs).train()
    out = model(torch.randn(2, 2, *shape))
    assert isinstance(out, models.SegOutput)
    assert len(out.logits) == len(out.features) == len(model.feature_channels) >= 4
    assert out.logits[0].shape == (2, 3, *shape)
    for logits, feats, channels in zip(out.logits, out.features, model.feature_channels):
        assert logits.shape[1] == 3
        assert feats.shape[1] == channels
        assert feats.shape[2:] == logits.shape[2:]
    sizes = [t.shape[-1] for t in out.logits]
    assert sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize("name", ["lcovnet", "unet3d"])
def test_eval_mode_without_deep_supervision_returns_full_resolution_logits(name):
    """The official LCOV-Net returned None here (docs/lcovnet-paper.md, defect Q6)."""
    model = models.create_model(name, 1, 4, base_channels=4, deep_supervision=False).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, 32, 32, 32))
    assert len(out.logits) == 1
    assert out.logits[0].shape == (1, 4, 32, 32, 32)
    assert model.feature_channels[0] == out.features[0].shape[1]


def test_lcovnet_width_is_configurable_by_list_or_base():
    a = models.create_model("lcovnet", 1, 17, channels=[16, 32, 64, 128, 256])
    b = models.create_model("lcovnet", 1, 17, base_channels=16)
    assert _params(a) == 819_220  # PyMIC 0.6.2 [16..256] configuration (docs/model-zoo.md §1)
    assert b.feature_channels == [16, 32, 64, 128]
    with pytest.raises(ValueError, match="either"):
        models.create_model("lcovnet", channels=[8] * 5, base_channels=8)


def test_lcovnet_honours_input_channels():
    model = models.create_model("lcovnet", in_channels=4, num_classes=2, base_channels=4)
    assert model.encoders[0].conv1[0].in_channels == 4


def test_nnunet_planner_reproduces_word_like_topology():
    kernels, strides = plan_topology((3.0, 0.977, 0.977), (64, 192, 160))
    assert kernels == [[1, 3, 3]] + [[3, 3, 3]] * 5
    assert strides == [[1, 1, 1], [1, 2, 2]] + [[2, 2, 2]] * 4


def test_nnunet_replans_for_isotropic_small_patch():
    kernels, strides = plan_topology((1.0, 1.0, 1.0), (32, 32, 32))
    assert strides == [[1, 1, 1]] + [[2, 2, 2]] * 3  # 32 -> 16 -> 8 -> 4, the smallest feature map
    assert all(k == [3, 3, 3] for k in kernels)
