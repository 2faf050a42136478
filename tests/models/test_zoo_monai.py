"""The MONAI adapters: hooked features, DynUNet's deep supervision, and input-size checks."""

import copy

import pytest
import torch
import torch.nn.functional as F

import models

SINGLE_SCALE = {
    "monai-unet": ({"base_channels": 2}, (16, 32, 32)),
    "monai-basicunet": ({"base_channels": 4}, (16, 32, 32)),
    "monai-segresnet": ({"base_channels": 8}, (16, 32, 32)),
    "monai-unetr": (
        {"patch": (32, 32, 32), "feature_size": 4, "hidden_size": 24, "mlp_dim": 48, "num_heads": 2},
        (32, 32, 32),
    ),
}


@pytest.mark.parametrize("name", sorted(SINGLE_SCALE))
def test_hooked_feature_is_what_the_output_block_turns_into_the_logits(name):
    kwargs, size = SINGLE_SCALE[name]
    model = models.create_model(name, 1, 3, **kwargs).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, *size))
        again = model.net.get_submodule(model.feature_module)(out.features[0])
    assert out.features[0].shape == (1, model.feature_channels[0], *size)
    torch.testing.assert_close(again, out.main)


def test_copied_adapter_hooks_its_own_output_block():
    """thop and EMA teachers deep-copy models: the copy must fill its own feature, not the original's."""
    kwargs, size = SINGLE_SCALE["monai-basicunet"]
    model = models.create_model("monai-basicunet", 1, 3, **kwargs).eval()
    clone = copy.deepcopy(model)
    with torch.no_grad():
        clone.net.final_conv.weight.mul_(2.0)
        out = clone(torch.randn(1, 1, *size))
        assert model._feature is None and clone._feature is None  # nothing kept alive after a forward
        torch.testing.assert_close(clone.net.final_conv(out.features[0]), out.main)


def test_dynunet_heads_match_monais_own_deep_supervision_outputs():
    model = models.create_model("monai-dynunet", 1, 3, filters=[4, 8, 8, 8, 8, 8]).train()
    x = torch.randn(1, 1, 32, 32, 32)
    torch.manual_seed(1)
    stacked = model.net(x)  # MONAI: [B, 1 + heads, K, D, H, W], heads interpolated to full resolution
    torch.manual_seed(1)
    out = model(x)
    assert stacked.shape[1] == len(out.logits) == 5
    assert [t.shape[2:] for t in out.logits][1] == (32, 16, 16)  # native resolution, [1, 2, 2] pooling first
    for i, logits in enumerate(out.logits):
        torch.testing.assert_close(F.interpolate(logits, size=x.shape[2:]), stacked[:, i])


def test_dynunet_without_deep_supervision_equals_monai_forward():
    model = models.create_model("monai-dynunet", 1, 3, filters=[4, 8, 8, 8, 8, 8], deep_supervision=False).eval()
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(out.main, model.net(x))
    assert model.feature_channels == [4] and len(out.logits) == 1


def test_unetr_rejects_an_input_size_other_than_its_patch():
    kwargs, _ = SINGLE_SCALE["monai-unetr"]
    model = models.create_model("monai-unetr", 1, 3, **kwargs)
    with pytest.raises(ValueError, match=r"built for input size \(32, 32, 32\)"):
        model(torch.randn(1, 1, 32, 32, 48))


@pytest.mark.parametrize(
    ("name", "patch", "match"),
    [("monai-unetr", (32, 32, 40), "multiples of 16"), ("monai-swinunetr", (32, 32, 48), "multiples of 32")],
)
def test_transformer_factories_reject_patches_their_stride_does_not_divide(name, patch, match):
    with pytest.raises(ValueError, match=match):
        models.create_model(name, 1, 3, patch=patch)
