"""Every zoo network at tiny width: the SegOutput contract, full MAC coverage, a training step, and KD in both roles."""

import math

import pytest
import torch
import torch.nn.functional as F

import models
from bench.profiling.flops import count_macs
from kd_methods import create_kd_method

# name -> (tiny-width kwargs, input size); sizes are the smallest each network's stride and norms allow
TINY = {
    "dmfnet": ({"channels": [8, 16], "groups": 4}, (16, 16, 16)),
    "mfnet": ({"channels": [8, 16], "groups": 4}, (16, 16, 16)),
    "espnet3d": ({"channels": [4, 8, 8, 16]}, (16, 16, 16)),
    "hdcnet": ({"base_channels": 8}, (16, 16, 16)),
    "unet3d-cicek": ({"base_channels": 4}, (16, 16, 16)),
    "monai-unet": ({"base_channels": 2}, (16, 16, 16)),
    "monai-basicunet": ({"base_channels": 4}, (16, 16, 32)),  # InstanceNorm needs > 1 voxel at 1/16
    "monai-segresnet": ({"base_channels": 8}, (16, 16, 16)),
    "monai-dynunet": ({"filters": [4, 8, 8, 8, 8, 8]}, (32, 32, 32)),
    "monai-unetr": (
        {"patch": (32, 32, 32), "feature_size": 4, "hidden_size": 48, "mlp_dim": 96, "num_heads": 4},
        (32, 32, 32),
    ),
    "monai-swinunetr": ({"patch": (32, 32, 64), "feature_size": 12, "window_size": 4}, (32, 32, 64)),
    "unetmod_tiny_d8": ({"base_channels": 4}, (16, 16, 16)),
    "unetmod_base_d8": ({"base_channels": 4}, (16, 16, 16)),
    "espnetv2_3d": ({"base_channels": 16}, (32, 32, 32)),  # its 3^3 average pools need 4 voxels at 1/8
    "mobile_unet3d": ({"base_channels": 8}, (32, 32, 32)),
}
# networks with several decoder scales -> number of scales with deep supervision on
MULTI_SCALE = {"dmfnet": 4, "mfnet": 4, "espnet3d": 3, "hdcnet": 4, "unet3d-cicek": 3, "monai-dynunet": 5,
               "unetmod_tiny_d8": 4, "unetmod_base_d8": 4, "espnetv2_3d": 3, "mobile_unet3d": 4}  # fmt: skip
# no BatchNorm: a batch of one is enough (and halves the cost of the slowest networks)
SINGLE_SAMPLE = {"monai-dynunet", "monai-unetr", "monai-swinunetr"}
IN_CHANNELS, CLASSES = 2, 3


def _build(name: str, **overrides) -> tuple[torch.nn.Module, torch.Tensor]:
    kwargs, size = TINY[name]
    model = models.create_model(name, IN_CHANNELS, CLASSES, **{**kwargs, **overrides})
    return model, torch.randn(1 if name in SINGLE_SAMPLE else 2, IN_CHANNELS, *size)


def test_every_zoo_network_has_a_tiny_configuration():
    zoo = {"dmfnet", "mfnet", "espnet3d", "hdcnet", "unet3d-cicek", *models.available_models("monai-*")}
    zoo |= {"unetmod_tiny_d8", "unetmod_base_d8", "espnetv2_3d", "mobile_unet3d"}
    assert zoo == set(TINY)


@pytest.mark.parametrize("name", sorted(TINY))
def test_output_contract_holds_with_deep_supervision(name):
    model, x = _build(name)
    out = model.train()(x)
    assert isinstance(out, models.SegOutput)
    assert len(out.logits) == len(out.features) == len(model.feature_channels) == MULTI_SCALE.get(name, 1)
    assert out.logits[0].shape == (len(x), CLASSES, *x.shape[2:])
    for logits, feature, channels in zip(out.logits, out.features, model.feature_channels):
        assert logits.shape[:2] == (len(x), CLASSES)
        assert feature.shape[:2] == (len(x), channels)
        assert feature.shape[2:] == logits.shape[2:]
    sizes = [math.prod(t.shape[2:]) for t in out.logits]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)


@pytest.mark.parametrize("name", sorted(MULTI_SCALE))
def test_deep_supervision_off_returns_one_full_resolution_scale(name):
    model, x = _build(name, deep_supervision=False)
    with torch.no_grad():
        out = model.eval()(x)
    assert len(out.logits) == len(out.features) == len(model.feature_channels) == 1
    assert out.logits[0].shape == (len(x), CLASSES, *x.shape[2:])
    assert out.features[0].shape == (len(x), model.feature_channels[0], *x.shape[2:])


@pytest.mark.parametrize("name", sorted(TINY))
def test_count_macs_counts_every_operator(name):
    model, x = _build(name)
    result = count_macs(model, x[:1])
    assert result.uncounted_ops == {}
    assert result.macs == sum(result.by_operator.values())
    assert result.by_operator["conv"] > 0


@pytest.mark.parametrize("name", sorted(TINY))
def test_one_sgd_step_reaches_every_parameter(name):
    model, x = _build(name)
    model.train()
    target = torch.randint(0, CLASSES, (len(x), *x.shape[2:]))
    out = model(x)
    loss = sum(
        F.cross_entropy(logits, F.interpolate(target[:, None].float(), logits.shape[2:])[:, 0].long())
        for logits in out.logits
    )
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    # MONAI's TransformerBlock builds a cross-attention LayerNorm even when cross-attention is off
    assert [n for n in missing if not (name == "monai-unetr" and ".norm_cross_attn." in n)] == []
    before = [p.detach().clone() for p in model.parameters()]
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def _partner() -> torch.nn.Module:
    """The LCOV-Net paper's U-Net at tiny width: four deep-supervision scales, stride 16 (every TINY size fits)."""
    return models.create_model("unet3d", IN_CHANNELS, CLASSES, base_channels=4)


def _kd_losses(student, student_out, teacher, teacher_out) -> list[torch.Tensor]:
    losses = []
    for method in ("ca", "kd"):
        kd = create_kd_method(method, student.feature_channels, teacher.feature_channels, CLASSES)
        loss = kd(student_out, teacher_out)
        assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
        losses.append(loss)
    return losses


@pytest.mark.parametrize("name", sorted(TINY))
def test_distils_as_student_with_ca_and_kd(name):
    """Gradients are taken with respect to the student's outputs only: the backward pass through each network is
    covered by the SGD-step test."""
    student, x = _build(name)
    teacher = _partner().eval()
    with torch.no_grad():
        teacher_out = teacher(x)
    student_out = student.train()(x)
    for loss in _kd_losses(student, student_out, teacher, teacher_out):
        grads = torch.autograd.grad(loss, student_out.logits, allow_unused=True)
        assert grads[0] is not None and grads[0].abs().sum() > 0


@pytest.mark.parametrize("name", sorted(TINY))
def test_serves_as_teacher_with_ca_and_kd(name):
    teacher, x = _build(name)
    student = _partner().train()
    with torch.no_grad():
        teacher_out = teacher.eval()(x)
    student_out = student(x)
    assert not any(t.requires_grad for t in teacher_out.logits + teacher_out.features)
    for loss in _kd_losses(student, student_out, teacher, teacher_out):
        grads = torch.autograd.grad(loss, student_out.logits, allow_unused=True)
        assert grads[0] is not None and grads[0].abs().sum() > 0
