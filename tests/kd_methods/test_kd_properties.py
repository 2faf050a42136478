"""Properties every registered KD method must have, whatever its maths."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from kd_methods import available_kd_methods, create_kd_method
from models import SegOutput
from tests.kd_methods.kd_loss_cases import (
    ANISOTROPIC_SIZES,
    NUM_CLASSES,
    SIZES,
    STUDENT_CHANNELS,
    TEACHER_CHANNELS,
    make_case,
)

METHODS = [*available_kd_methods(), "ca+ms"]
# Methods whose student side passes through a module trained with the student (random at first), or that keep the
# official cross-entropy form: their loss is not 0 at equality (each docstring says why). The terms of theirs that
# are 0 at equality are tested in test_kd_new_methods.
NOT_ZERO_AT_EQUALITY = {"acf", "cirkd", "ft", "nkd", "reviewkd"}
# Parameters that a method trains in a stage of its own and then uses without gradient.
FROZEN_AFTER_WARMUP = {"ft": ("paraphraser.",)}
# Factor Transfer's first calls train its paraphraser only; the properties concern the distillation stage after it.
DISTILLING = {"ft": {"paraphraser_iterations": 0}}
# Extra settings that take another code path and must keep the same properties.
VARIANTS = [
    ("cwd", {"on": "features"}),
    ("ms", {"norm": "global"}),
    ("ms", {"norm": "none"}),
    ("ms", {"preset": "nnunet"}),
    ("ms", {"variant": "pymic"}),
    ("ms", {"variant": "sample"}),
    ("fitnet", {"num_scales": 4}),
]
CASES = [(name, DISTILLING.get(name, {})) for name in METHODS] + VARIANTS
IDS = [name + "".join(f"-{k}={v}" for k, v in hp.items()) for name, hp in CASES]


def _student_tensors(out: SegOutput) -> list[torch.Tensor]:
    return [*out.logits, *out.features]


@pytest.mark.parametrize(
    ("name", "hp"),
    [c for c in CASES if c[0] not in NOT_ZERO_AT_EQUALITY],
    ids=[i for i, c in zip(IDS, CASES) if c[0] not in NOT_ZERO_AT_EQUALITY],
)
def test_loss_is_zero_when_student_equals_teacher(name, hp):
    _, teacher, target = make_case(student_channels=TEACHER_CHANNELS)
    student = SegOutput([t.clone() for t in teacher.logits], [f.clone() for f in teacher.features])
    method = create_kd_method(name, TEACHER_CHANNELS, TEACHER_CHANNELS, NUM_CLASSES, **hp)
    loss = method(student, teacher, target)
    assert loss.shape == ()
    assert abs(loss.item()) < 1e-5


@pytest.mark.parametrize(("name", "hp"), CASES, ids=IDS)
def test_gradients_reach_student_and_adapters_but_never_the_teacher(name, hp):
    student, teacher, target = make_case(requires_grad=True)
    for t in _student_tensors(teacher):
        t.requires_grad_(True)
    method = create_kd_method(name, STUDENT_CHANNELS, TEACHER_CHANNELS, NUM_CLASSES, **hp)
    method(student, teacher, target).backward()
    assert all(t.grad is None for t in _student_tensors(teacher))
    grads = [t.grad for t in _student_tensors(student) if t.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    frozen = FROZEN_AFTER_WARMUP.get(name, ())
    for pname, param in method.named_parameters():
        if pname.startswith(frozen):
            assert param.grad is None, pname
            continue
        assert param.grad is not None and float(param.grad.abs().sum()) > 0, pname


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize(("name", "hp"), CASES, ids=IDS)
def test_any_batch_size_gives_a_finite_non_negative_scalar(name, hp, batch):
    student, teacher, target = make_case(batch=batch, requires_grad=True)
    loss = create_kd_method(name, STUDENT_CHANNELS, TEACHER_CHANNELS, NUM_CLASSES, **hp)(student, teacher, target)
    assert loss.shape == () and math.isfinite(loss.item()) and loss.item() > 0
    loss.backward()


@pytest.mark.parametrize(
    ("student_scales", "teacher_channels", "teacher_sizes"),
    [(4, [6, 12, 24], ANISOTROPIC_SIZES[:3]), (2, [8, 16, 32, 64], ANISOTROPIC_SIZES)],
    ids=["student-4-scales-teacher-3-anisotropic", "student-2-scales-teacher-4-anisotropic"],
)
@pytest.mark.parametrize(("name", "hp"), CASES, ids=IDS)
def test_mismatched_channels_scale_counts_and_sizes_are_aligned(
    name, hp, student_scales, teacher_channels, teacher_sizes
):
    student_channels = STUDENT_CHANNELS[:student_scales]
    student, teacher, target = make_case(
        student_channels=student_channels,
        teacher_channels=teacher_channels,
        student_sizes=SIZES[:student_scales],
        teacher_sizes=teacher_sizes,
        requires_grad=True,
    )
    method = create_kd_method(name, student_channels, teacher_channels, NUM_CLASSES, **hp)
    loss = method(student, teacher, target)
    assert math.isfinite(loss.item()) and loss.item() > 0
    loss.backward()


@pytest.mark.parametrize(("name", "hp"), CASES, ids=IDS)
def test_low_precision_inputs_under_autocast_are_computed_in_fp32(name, hp):
    student, teacher, target = make_case()
    half = [SegOutput([t.bfloat16() for t in o.logits], [f.bfloat16() for f in o.features]) for o in (student, teacher)]
    upcast = [SegOutput([t.float() for t in o.logits], [f.float() for f in o.features]) for o in half]
    torch.manual_seed(0)
    method = create_kd_method(name, STUDENT_CHANNELS, TEACHER_CHANNELS, NUM_CLASSES, **hp)
    twin = copy.deepcopy(method)  # methods with a memory or a call counter: both calls start from the same state
    torch.manual_seed(1)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss = method(*half, target)
    assert loss.dtype == torch.float32
    torch.manual_seed(1)
    assert loss.item() == pytest.approx(twin(*upcast, target).item(), rel=1e-5)


@pytest.mark.parametrize("name", [n for n in METHODS if create_kd_method(n, [4], [4], 2).needs_target])
def test_methods_that_need_labels_reject_missing_or_misshapen_target(name):
    student, teacher, target = make_case()
    method = create_kd_method(name, STUDENT_CHANNELS, TEACHER_CHANNELS, NUM_CLASSES)
    with pytest.raises(ValueError, match="needs the integer label map"):
        method(student, teacher)
    with pytest.raises(ValueError, match=r"target must be \[B, D, H, W\]"):
        method(student, teacher, target[:, None])


@pytest.mark.parametrize("name", available_kd_methods())
def test_wrong_class_count_is_reported_with_both_numbers(name):
    student, teacher, target = make_case()
    method = create_kd_method(name, STUDENT_CHANNELS, TEACHER_CHANNELS, NUM_CLASSES + 1)
    with pytest.raises(ValueError, match=f"have {NUM_CLASSES} classes.*built for {NUM_CLASSES + 1}"):
        method(student, teacher, target)


@pytest.mark.parametrize("name", ["at", "fitnet", "skd", "ifvd", "emkd", "ms", "cirkd", "reviewkd", "ft", "acf"])
def test_feature_methods_say_when_features_are_missing(name):
    student, teacher, target = make_case()
    bare = SegOutput(list(student.logits))
    method = create_kd_method(name, STUDENT_CHANNELS, TEACHER_CHANNELS, NUM_CLASSES)
    with pytest.raises(ValueError, match="student SegOutput has no `features`"):
        method(bare, teacher, target)


def test_adapter_reports_a_channel_count_other_than_declared():
    student, teacher, _ = make_case()
    method = create_kd_method("fitnet", [5, 8, 16, 32], TEACHER_CHANNELS, NUM_CLASSES)
    with pytest.raises(ValueError, match=r"has 4 channels.*student_channels\[0\] = 5"):
        method(student, teacher)
