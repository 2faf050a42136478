"""ACF-BCKD's tiny U-Net and ResU-Net teacher: MONAI's UNet with their configurations, unrolled."""

import pytest
import torch
from monai.networks.nets import UNet

import models

# their configurations (github.com/605671435/ACF-BCKD configs/unet/unetmod_{tiny,base}_d8_*.py): channels, units
CONFIGS = {"unetmod_tiny_d8": ((32, 64, 128, 256), 0), "unetmod_base_d8": ((64, 128, 256, 512), 2)}


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _monai(name: str, num_classes: int, channels=None) -> UNet:
    """The reference: MONAI's UNet with their arguments (their UNetMod builds the same modules)."""
    default, units = CONFIGS[name]
    return UNet(3, 1, num_classes, channels or default, (2, 2, 2), num_res_units=units)


@pytest.mark.parametrize(
    ("name", "num_classes", "expected"),
    [
        ("unetmod_tiny_d8", 14, 1_961_012),  # BTCV: 13 organs + background
        ("unetmod_tiny_d8", 17, 1_966_199),  # WORD: 16 organs + background
        ("unetmod_base_d8", 14, 18_992_149),
        ("unetmod_base_d8", 17, 19_005_034),
    ],
)
def test_parameter_count_equals_monais_unet_with_their_configuration(name, num_classes, expected):
    with torch.device("meta"):
        ours = models.create_model(name, 1, num_classes, deep_supervision=False)
        reference = _monai(name, num_classes)
    assert _params(ours) == _params(reference) == expected


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_deep_supervision_adds_their_three_1x1x1_heads(name):
    channels, _ = CONFIGS[name]
    with torch.device("meta"):
        plain = _params(models.create_model(name, 1, 14, deep_supervision=False))
        supervised = models.create_model(name, 1, 14)
    c0, c1, c2, c3 = channels
    assert _params(supervised) - plain == (c0 + c1 + c2 + c3) * 14 + 3 * 14
    assert supervised.feature_channels == [14, c0, c1, c2 + c3]


def _monai_blocks(net: UNet) -> list[torch.nn.Module]:
    """MONAI's nested UNet as the blocks of our unrolled one: three downs, bottom, two ups, top."""
    inner = net.model[1].submodule
    innermost = inner[1].submodule
    return [net.model[0], inner[0], innermost[0], innermost[1].submodule, innermost[2], inner[2], net.model[2]]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_forward_equals_monais_unet_given_the_same_weights(name):
    channels = (4, 8, 16, 32)
    reference = _monai(name, 3, channels).eval()
    ours = models.create_model(name, 1, 3, channels=channels, deep_supervision=False).eval()
    top = [ours.top_up] + ([ours.top_out] if ours.top_out is not None else [])
    our_blocks = [*ours.downs, ours.bottom, *ours.ups, torch.nn.ModuleList(top)]
    skip_widths = [None, None, None, None, channels[2], channels[1], channels[0]]
    with torch.no_grad():
        for mine, theirs, skip in zip(our_blocks, _monai_blocks(reference), skip_widths, strict=True):
            for i, (p, q) in enumerate(zip(mine.parameters(), theirs.parameters(), strict=True)):
                if i == 0 and skip is not None:  # UNetMod concatenates [decoder, skip], MONAI [skip, decoder]
                    q = torch.cat([q[skip:], q[:skip]])
                assert p.shape == q.shape
                p.copy_(q)
        x = torch.randn(1, 1, 16, 16, 16)
        torch.testing.assert_close(ours(x).main, reference(x))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_batch_of_one_trains_and_every_parameter_gets_a_gradient(name):
    model = models.create_model(name, 1, 3, base_channels=4).train()
    out = model(torch.randn(1, 1, 16, 16, 16))
    assert [tuple(t.shape[2:]) for t in out.logits] == [(16,) * 3, (8,) * 3, (4,) * 3, (2,) * 3]
    sum(t.square().mean() for t in out.logits).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []


def test_tiny_networks_feature_is_its_logits_and_the_base_ones_feeds_its_last_unit():
    x = torch.randn(1, 1, 16, 16, 16)
    tiny = models.create_model("unetmod_tiny_d8", 1, 3, base_channels=4, deep_supervision=False).eval()
    base = models.create_model("unetmod_base_d8", 1, 3, base_channels=4, deep_supervision=False).eval()
    with torch.no_grad():
        out_tiny, out_base = tiny(x), base(x)
        torch.testing.assert_close(out_tiny.features[0], out_tiny.main)
        torch.testing.assert_close(base.top_out(out_base.features[0]), out_base.main)
    assert tiny.feature_channels == base.feature_channels == [3]
