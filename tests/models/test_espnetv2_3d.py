"""ACF-BCKD's 3D ESPNetV2: parameter count against a recount of their code, contract, training at batch 1."""

import math

import pytest
import torch

import models

# their configuration (github.com/605671435/ACF-BCKD configs/espnetv2/*.py, seg/models/nets/utils/espnetv2_config.py)
WIDTHS, REPS, IMAGE_CHANNELS = (32, 64, 128, 256), (3, 7), 1


def _cbr(cin: int, cout: int, kernel: int, groups: int = 1) -> int:
    return cin // groups * cout * kernel**3 + 3 * cout  # bias-free conv, BN weight and bias, PReLU per channel


def _eesp(cin: int, cout: int) -> int:
    """Their EESP: grouped projection, 4 depthwise branches, grouped 1x1x1 CB, BR, PReLU (built even if unused)."""
    n = cout // 4
    return _cbr(cin, n, 1, groups=4) + 4 * 27 * n + (cout * cout // 4 + 2 * cout) + 3 * cout + cout


def _down_sampler(cin: int, cout: int) -> int:
    reinforcement = _cbr(IMAGE_CHANNELS, IMAGE_CHANNELS, 3) + IMAGE_CHANNELS * cout + 2 * cout
    return _eesp(cin, cout - cin) + reinforcement + cout


def _epp(cin: int, projected: int, cout: int, last: bool) -> int:
    merge = 3 * 5 * projected + _cbr(5 * projected, projected, 3, groups=projected) + projected * cout
    return _cbr(cin, projected, 1) + 5 * 27 * projected + merge + (cout if last else 3 * cout)


def _pw(cin: int, cout: int) -> int:
    return cin * cout + _cbr(cin, cout, 3, groups=math.gcd(cin, cout))


def _reference_count(num_classes: int) -> int:
    """Their ESPNetv2Segmentation(args=dict(s=1.0, channels=1), classes=K) recounted module by module."""
    c1, c2, c3, c4 = WIDTHS
    encoder = _cbr(IMAGE_CHANNELS, c1, 3) + _down_sampler(c1, c2) + _down_sampler(c2, c3) + _down_sampler(c3, c4)
    encoder += REPS[0] * _eesp(c3, c3) + REPS[1] * _eesp(c4, c4)
    p = min(num_classes // 2, 16)
    decoder = _epp(c4, p, 64, False) + _epp(64, p, 48, False) + _epp(48, p, 32, False) + _epp(32, p, num_classes, True)
    decoder += _pw(c3, 64) + _pw(c2, 48) + _pw(c1, 32) + 3 * (64 + 48 + 32)
    return encoder + decoder


def _unused_prelus() -> int:
    """The PReLU of each down-sampler's stride-2 EESP, which returns before it (not built here)."""
    c1, c2, c3, c4 = WIDTHS
    return (c2 - c1) + (c3 - c2) + (c4 - c3)


@pytest.mark.parametrize(("num_classes", "reference"), [(14, 284_438), (17, 286_187)])
def test_parameter_count_is_their_recount_less_the_unused_prelus(num_classes, reference):
    """284,438 at 14 classes (BTCV) is also what instantiating their class gives (docs/model-zoo.md)."""
    with torch.device("meta"):
        model = models.create_model("espnetv2_3d", 1, num_classes, deep_supervision=False)
    assert _reference_count(num_classes) == reference
    assert sum(p.numel() for p in model.parameters()) == reference - _unused_prelus() == reference - 224


def test_batch_of_one_trains_and_every_parameter_gets_a_gradient():
    model = models.create_model("espnetv2_3d", 1, 4, base_channels=16).train()
    out = model(torch.randn(1, 1, 32, 32, 48))
    assert [tuple(t.shape) for t in out.logits] == [(1, 4, 32, 32, 48), (1, 4, 8, 8, 12), (1, 4, 4, 4, 6)]
    assert [t.shape[1] for t in out.features] == model.feature_channels == [4, 32, 48]
    sum(t.square().mean() for t in out.logits).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []


def test_full_resolution_output_is_the_interpolated_class_map():
    model = models.create_model("espnetv2_3d", 1, 3, base_channels=16, deep_supervision=False).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, 32, 32, 32))
    assert len(out.logits) == len(out.features) == 1
    torch.testing.assert_close(out.features[0], out.main)


def test_widths_its_grouped_convs_cannot_split_are_refused():
    with pytest.raises(ValueError, match="multiple of 16"):
        models.create_model("espnetv2_3d", 1, 3, base_channels=8)
