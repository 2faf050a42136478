"""Registry behaviour: names, metadata, unknown names and '+' composition."""

from __future__ import annotations

import pytest
import torch

from kd_methods import UnknownKDMethodError, available_kd_methods, create_kd_method, kd_method_info
from tests.kd_methods.kd_loss_cases import NUM_CLASSES, STUDENT_CHANNELS, TEACHER_CHANNELS, make_case

METHODS = ["acf", "at", "ca", "cirkd", "cwd", "dist", "dkd", "emkd", "fitnet", "ft", "ifvd", "kd", "ms", "nkd",
           "reviewkd", "skd"]  # fmt: skip


def build(name: str, **hp):
    return create_kd_method(name, STUDENT_CHANNELS, TEACHER_CHANNELS, NUM_CLASSES, **hp)


def test_every_method_is_registered_with_metadata_and_trainer_flags():
    assert available_kd_methods() == METHODS
    assert available_kd_methods("c*") == ["ca", "cirkd", "cwd"]
    for name in METHODS:
        info = kd_method_info(name)
        assert info.description and info.reference
        assert isinstance(info.cls.seg_loss_weight, float)
        assert isinstance(info.cls.needs_target, bool)
    assert {n for n in METHODS if kd_method_info(n).cls.needs_target} == {"acf", "cirkd", "dkd", "emkd", "ifvd", "nkd"}
    seg_weights = {n: kd_method_info(n).cls.seg_loss_weight for n in METHODS}
    assert {n: w for n, w in seg_weights.items() if w != 1.0} == {"ca": 0.8, "ms": 0.8}


def test_unknown_method_error_lists_registered_names():
    with pytest.raises(UnknownKDMethodError) as err:
        build("hinton")
    assert "'hinton'" in str(err.value)
    assert all(name in str(err.value) for name in METHODS)


def test_composition_sums_the_parts_and_combines_their_flags():
    student, teacher, _ = make_case()
    combined = build("ca+ms")
    parts_sum = build("ca")(student, teacher) + build("ms")(student, teacher)
    assert float(combined(student, teacher)) == pytest.approx(float(parts_sum), rel=1e-6)
    assert combined.seg_loss_weight == 0.8
    assert combined.needs_target is False
    assert build("kd+ifvd").needs_target is True
    assert build("kd+ifvd").seg_loss_weight == 1.0
    assert build("ca+kd").seg_loss_weight == 0.8


def test_composition_with_an_unknown_part_names_that_part():
    with pytest.raises(UnknownKDMethodError) as err:
        build("ca+msk")
    message = str(err.value)
    assert "'msk'" in message and "'ca+msk'" in message and "registered methods: acf, at, ca" in message
    with pytest.raises(UnknownKDMethodError, match="''"):
        build("ca+")


def test_composition_rejects_a_repeated_part():
    with pytest.raises(ValueError, match="more than once"):
        build("kd+kd")


def test_composition_routes_shared_and_part_scoped_hyperparameters():
    combined = build("ca+ms", preset="nnunet", ms={"norm": "global"})
    assert combined.parts["ca"].weight == pytest.approx(0.1)
    assert combined.parts["ms"].weight == pytest.approx(0.2)
    assert combined.parts["ms"].norm == "global"
    assert build("ifvd+kd", kd={"weight": 10.0}).parts["kd"].weight == 10.0
    assert build("ifvd+kd", kd={"weight": 10.0}).parts["ifvd"].weight == 200.0


def test_composition_exposes_part_adapters_as_its_parameters():
    combined = build("fitnet+kd")
    adapter_params = set(map(id, combined.parts["fitnet"].parameters()))
    assert adapter_params and adapter_params == set(map(id, combined.parameters()))
    student, teacher, _ = make_case(requires_grad=True)
    combined(student, teacher).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in combined.parameters())
    assert isinstance(combined(student, teacher), torch.Tensor)
