"""Invariances each method should have (and one it must not have), from the definitions in each method's
docstring (kd_methods/)."""

from __future__ import annotations

import pytest
import torch

from kd_methods import create_kd_method
from models import SegOutput
from tests.kd_methods.kd_loss_cases import NUM_CLASSES, STUDENT_CHANNELS, TEACHER_CHANNELS, make_case


def _loss(name: str, student: SegOutput, teacher: SegOutput, target=None, **hp) -> float:
    torch.manual_seed(0)
    method = create_kd_method(name, STUDENT_CHANNELS, TEACHER_CHANNELS, NUM_CLASSES, **hp)
    with torch.no_grad():
        return method(student, teacher, target).item()


def _per_voxel(t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return 5.0 * torch.randn(t.shape[0], 1, *t.shape[2:], generator=gen)


def _per_sample(t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(t.shape[0], 1, 1, 1, 1, generator=gen) * 10 + 0.1


def _with(out: SegOutput, logits=None, features=None) -> SegOutput:
    return SegOutput(logits if logits is not None else out.logits, features if features is not None else out.features)


@pytest.mark.parametrize(("name", "hp"), [("kd", {"tau": 3.0}), ("dist", {}), ("dist", {"tau": 4.0})])
def test_logit_methods_ignore_a_per_voxel_shift_of_the_logits(name, hp):
    student, teacher, _ = make_case()
    gen = torch.Generator().manual_seed(7)
    shifted_student = _with(student, logits=[z + _per_voxel(z, gen) for z in student.logits])
    shifted_teacher = _with(teacher, logits=[z + _per_voxel(z, gen) for z in teacher.logits])
    base = _loss(name, student, teacher, **hp)
    assert _loss(name, shifted_student, teacher, **hp) == pytest.approx(base, rel=1e-5)
    assert _loss(name, student, shifted_teacher, **hp) == pytest.approx(base, rel=1e-5)


def test_ca_ignores_voxel_permutations_and_per_voxel_logit_constants():
    student, teacher, _ = make_case()
    gen = torch.Generator().manual_seed(7)
    permuted = [
        z.flatten(2)[:, :, torch.randperm(z[0, 0].numel(), generator=gen)].reshape(z.shape) for z in student.logits
    ]
    shifted = [z + _per_voxel(z, gen) for z in student.logits]
    base = _loss("ca", student, teacher)
    assert _loss("ca", _with(student, logits=permuted), teacher) == pytest.approx(base, rel=1e-4)
    assert _loss("ca", _with(student, logits=shifted), teacher) == pytest.approx(base, rel=1e-4)


@pytest.mark.parametrize("norm", ["voxel_floor", "sample", "voxel", "global"])
@pytest.mark.parametrize("a", [0.3, 7.0])
def test_ms_is_unchanged_when_student_logits_and_features_are_scaled_together(norm, a):
    student, teacher, _ = make_case()
    scaled = SegOutput([a * z for z in student.logits], [a * f for f in student.features])
    assert _loss("ms", scaled, teacher, norm=norm) == pytest.approx(_loss("ms", student, teacher, norm=norm), rel=1e-5)


def test_cwd_ignores_per_channel_constants_but_not_rescaling():
    student, teacher, _ = make_case()
    gen = torch.Generator().manual_seed(7)
    shifted = [z + 5.0 * torch.randn(*z.shape[:2], 1, 1, 1, generator=gen) for z in student.logits]
    base = _loss("cwd", student, teacher)
    assert _loss("cwd", _with(student, logits=shifted), teacher) == pytest.approx(base, rel=1e-5)
    doubled = _with(student, logits=[2 * z for z in student.logits])
    assert _loss("cwd", doubled, teacher) != pytest.approx(base, rel=1e-2)


@pytest.mark.parametrize("name", ["at", "skd", "ifvd", "emkd"])
def test_feature_methods_ignore_positive_per_sample_scaling_of_features(name):
    student, teacher, target = make_case()
    gen = torch.Generator().manual_seed(7)
    base = _loss(name, student, teacher, target)
    scaled_student = _with(student, features=[f * _per_sample(f, gen) for f in student.features])
    scaled_teacher = _with(teacher, features=[f * _per_sample(f, gen) for f in teacher.features])
    assert _loss(name, scaled_student, teacher, target) == pytest.approx(base, rel=1e-4)
    assert _loss(name, student, scaled_teacher, target) == pytest.approx(base, rel=1e-4)


def test_skd_pair_term_ignores_positive_per_voxel_scaling_without_pooling():
    gen = torch.Generator().manual_seed(7)
    logits = [torch.randn(2, NUM_CLASSES, 2, 2, 2, generator=gen)]
    field = torch.rand(2, 1, 2, 2, 2, generator=gen) + 0.1
    # 2 x 2 x 2 voxels pooled to 2 x 2 x 2 nodes: pooling is the identity, so every voxel is a node.
    s = SegOutput(logits, [torch.randn(2, 4, 2, 2, 2, generator=gen)])
    t = SegOutput(logits, [torch.randn(2, 8, 2, 2, 2, generator=gen)])
    base = _loss("skd", s, t, pixel_weight=0.0)
    assert base > 0
    scaled = SegOutput(logits, [s.features[0] * field])
    assert _loss("skd", scaled, t, pixel_weight=0.0) == pytest.approx(base, rel=1e-5)
