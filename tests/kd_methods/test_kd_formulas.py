"""Each loss against an independent float64 re-implementation of its formula (each method's docstring in
kd_methods/) on small inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kd_methods import create_kd_method
from kd_methods._align import labels_at, paired, scale_weights
from kd_methods._ops import chunked_expand, chunked_matmul
from models import SegOutput
from tests.kd_methods.kd_loss_cases import NUM_CLASSES, STUDENT_CHANNELS, TEACHER_CHANNELS, make_case


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _kl_rows(p: np.ndarray, q: np.ndarray, axis: int) -> np.ndarray:
    return (p * (np.log(p) - np.log(q))).sum(axis=axis)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _build(
    name: str, student_channels=STUDENT_CHANNELS, teacher_channels=TEACHER_CHANNELS, num_classes=NUM_CLASSES, **hp
):
    torch.manual_seed(0)
    return create_kd_method(name, student_channels, teacher_channels, num_classes, **hp)


def _ca_reference(z_s: np.ndarray, z_t: np.ndarray) -> float:
    cos = []
    for b in range(z_s.shape[0]):
        p_s = _softmax(z_s[b], 0).reshape(z_s.shape[1], -1)
        p_t = _softmax(z_t[b], 0).reshape(z_t.shape[1], -1)
        m_s, m_t = p_s @ p_s.T, p_t @ p_t.T
        cos += [_cos(m_s[:, k], m_t[:, k]) for k in range(m_s.shape[1])]
    return 1.0 - float(np.mean(cos))


def test_kd_gradient_is_tau_times_probability_gap_over_voxels():
    student, teacher, _ = make_case(requires_grad=True)
    tau, weight = 2.5, 1.5
    _build("kd", tau=tau, weight=weight)(student, teacher).backward()
    z_s, z_t = student.logits[0], teacher.logits[0]
    p_gap = F.softmax(z_s.detach().double() / tau, 1) - F.softmax(z_t.double() / tau, 1)
    expected = weight * tau * p_gap / (z_s.shape[0] * z_s[0, 0].numel())
    torch.testing.assert_close(z_s.grad.double(), expected, rtol=1e-4, atol=1e-9)


def test_kd_value_is_tau_squared_batchmean_kl_over_voxel_rows():
    student, teacher, _ = make_case()
    tau = 4.0
    rows_s = student.logits[0].movedim(1, -1).reshape(-1, NUM_CLASSES).double()
    rows_t = teacher.logits[0].movedim(1, -1).reshape(-1, NUM_CLASSES).double()
    expected = tau**2 * F.kl_div(F.log_softmax(rows_s / tau, 1), F.softmax(rows_t / tau, 1), reduction="batchmean")
    assert _build("kd", tau=tau)(student, teacher).item() == pytest.approx(expected.item(), rel=1e-5)


def test_ca_matches_reference_and_counts_every_batch_item():
    student, teacher, _ = make_case(batch=3)
    method = _build("ca", weight=1.0, scale_weights=[1.0])
    z_s, z_t = _np(student.logits[0]), _np(teacher.logits[0])
    assert method(student, teacher).item() == pytest.approx(_ca_reference(z_s, z_t), rel=1e-4)
    per_sample = [
        method(SegOutput([student.logits[0][b : b + 1]]), SegOutput([teacher.logits[0][b : b + 1]])).item()
        for b in range(3)
    ]
    assert method(student, teacher).item() == pytest.approx(np.mean(per_sample), rel=1e-4)


def test_ca_is_one_plus_the_official_value_at_batch_two():
    student, teacher, _ = make_case(batch=2)
    method = _build("ca", weight=1.0, scale_weights=[1.0])
    # The official CAKD (PyMIC kd.py), in float64: -mean over batch items 0 and 1 of the column cosines.
    z_s, z_t = student.logits[0].detach().double(), teacher.logits[0].double()
    m_s = torch.stack([F.softmax(z, 0).flatten(1) @ F.softmax(z, 0).flatten(1).T for z in z_s])
    m_t = torch.stack([F.softmax(z, 0).flatten(1) @ F.softmax(z, 0).flatten(1).T for z in z_t])
    official = -torch.stack([F.cosine_similarity(m_s[b], m_t[b], dim=0) for b in (0, 1)]).mean()
    assert method(student, teacher).item() == pytest.approx(1.0 + official.item(), rel=1e-4)


def test_ca_and_ms_renormalise_the_paper_scale_weights_over_available_scales():
    assert scale_weights([0.4, 0.2, 0.2, 0.2], 4) == pytest.approx([0.4, 0.2, 0.2, 0.2])
    assert scale_weights([0.4, 0.2, 0.2, 0.2], 2) == pytest.approx([2 / 3, 1 / 3])
    assert scale_weights([0.4, 0.2, 0.2, 0.2], 6) == pytest.approx([0.4, 0.2, 0.2, 0.2])
    student, teacher, _ = make_case()
    two = SegOutput(student.logits[:2], student.features[:2])
    single = [
        _build("ca", weight=1.0, scale_weights=[1.0])(SegOutput([student.logits[i]]), SegOutput([teacher.logits[i]]))
        for i in (0, 1)
    ]
    expected = 0.02 * (2 / 3 * single[0].item() + 1 / 3 * single[1].item())
    assert _build("ca")(two, teacher).item() == pytest.approx(expected, rel=1e-5)


def _ms_reference(student: SegOutput, teacher: SegOutput, norm: str, tau_fn: float) -> float:
    total = 0.0
    for w, z_s, z_t, f_s, f_t in zip(
        [0.4, 0.2, 0.2, 0.2], student.logits, teacher.logits, student.features, teacher.features
    ):
        z_s, z_t, f_s, f_t = map(_np, (z_s, z_t, f_s, f_t))
        if norm == "voxel_floor":  # each voxel's norm, floored at 0.1 x its element's RMS voxel norm
            n_s, n_t = (
                np.maximum(
                    np.linalg.norm(f, axis=1, keepdims=True),
                    0.1 * np.sqrt((f**2).sum(axis=1).reshape(len(f), -1).mean(axis=1)).reshape(-1, 1, 1, 1, 1),
                )
                for f in (f_s, f_t)
            )
        elif norm == "sample":  # no element of make_case is near zero, so the floor is inactive
            n_s, n_t = (
                np.sqrt((f**2).sum(axis=1).reshape(len(f), -1).mean(axis=1)).reshape(-1, 1, 1, 1, 1) for f in (f_s, f_t)
            )
        elif norm == "voxel":
            n_s, n_t = np.linalg.norm(f_s, axis=1, keepdims=True), np.linalg.norm(f_t, axis=1, keepdims=True)
        else:
            n_s, n_t = np.linalg.norm(f_s), np.linalg.norm(f_t)
        p_t, p_s = _softmax(tau_fn * z_t / n_t, 1), _softmax(tau_fn * z_s / n_s, 1)
        total += w * float(_kl_rows(p_t, p_s, axis=1).mean())
    return total


@pytest.mark.parametrize(
    ("preset", "norm", "weight"),
    [("pymic", "sample", 0.04), ("pymic", "voxel", 0.04), ("nnunet", "global", 0.2), ("pymic", "voxel_floor", 0.04)],
)
def test_ms_matches_reference_with_preset_weight(preset, norm, weight):
    student, teacher, _ = make_case()
    method = _build("ms", preset=preset, norm=norm)
    assert method.weight == pytest.approx(weight)
    expected = weight * _ms_reference(student, teacher, norm, 2.0)
    assert method(student, teacher).item() == pytest.approx(expected, rel=1e-4)
    assert _build("ms", preset=preset, weight=3.0).weight == 3.0


@pytest.mark.parametrize(
    ("variant", "norm", "tau_fn", "weight"),
    [("paper", "voxel_floor", 2.0, 0.04), ("pymic", "global", 1.0, 0.04), ("nnunet", "global", 2.0, 0.2),
     ("sample", "sample", 2.0, 0.04)],
)  # fmt: skip
def test_ms_named_variants_compute_the_formula_they_claim(variant, norm, tau_fn, weight):
    student, teacher, _ = make_case()
    method = _build("ms", variant=variant)
    assert (method.variant, method.norm, method.tau_fn, method.weight) == (variant, norm, tau_fn, pytest.approx(weight))
    expected = weight * _ms_reference(student, teacher, norm, tau_fn)
    assert method(student, teacher).item() == pytest.approx(expected, rel=1e-4)


def test_ms_variant_parts_can_be_overridden_and_an_unknown_variant_is_named():
    method = _build("ms", variant="pymic", tau_fn=3.0, preset="nnunet")
    assert (method.norm, method.tau_fn, method.weight) == ("global", 3.0, pytest.approx(0.2))
    with pytest.raises(ValueError, match="unknown variant 'fnkd'; choose one of: paper, pymic, nnunet, sample"):
        _build("ms", variant="fnkd")


def test_ms_paper_variant_stays_bounded_where_the_unfloored_voxel_norm_explodes():
    torch.manual_seed(0)
    z_s, z_t = torch.randn(2, 5, 2, 2, 2, requires_grad=True), torch.randn(2, 5, 2, 2, 2)
    f_s, f_t = torch.rand(2, 8, 2, 2, 2), torch.rand(2, 8, 2, 2, 2)
    f_s[0, :, 0, 0, 0] = 0  # one voxel, all features 0
    losses = {}
    for norm in ("voxel_floor", "voxel"):
        loss = _build("ms", [8], [8], 5, norm=norm)(SegOutput([z_s], [f_s]), SegOutput([z_t], [f_t]))
        (grad,) = torch.autograd.grad(loss, z_s)
        losses[norm] = (loss.item(), grad.abs().max().item())
    assert losses["voxel_floor"][1] < 1.0 and losses["voxel"][1] > 1e3
    f_s.zero_()
    assert torch.isfinite(_build("ms", [8], [8], 5)(SegOutput([z_s], [f_s]), SegOutput([z_t], [f_t])))


def test_ms_stays_bounded_when_a_voxel_or_a_batch_element_has_all_zero_features():
    torch.manual_seed(0)
    z_s, z_t = torch.randn(2, 5, 2, 2, 2, requires_grad=True), torch.randn(2, 5, 2, 2, 2)
    f_s, f_t = torch.rand(2, 8, 2, 2, 2), torch.rand(2, 8, 2, 2, 2)
    ms = _build("ms", [8], [8], 5, variant="sample")
    before = ms(SegOutput([z_s], [f_s]), SegOutput([z_t], [f_t])).item()
    f_s[0, :, 0, 0, 0] = 0  # one voxel, all features 0 (the reproduction)
    one_voxel = ms(SegOutput([z_s], [f_s]), SegOutput([z_t], [f_t]))
    one_voxel.backward()
    assert one_voxel.item() < 2 * before and z_s.grad.abs().max() < 1.0
    f_s[1] = 0  # a whole batch element
    assert ms(SegOutput([z_s], [f_s]), SegOutput([z_t], [f_t])).item() < 50 * before
    f_s.zero_()
    assert torch.isfinite(ms(SegOutput([z_s], [f_s]), SegOutput([z_t], [f_t])))
    low_precision = SegOutput([z_s.half()], [torch.rand(2, 8, 2, 2, 2).half()])
    assert torch.isfinite(ms(low_precision, SegOutput([z_t.bfloat16()], [f_t.bfloat16()])))


def test_ms_gives_the_student_a_gradient_at_every_scale():
    student, teacher, _ = make_case(requires_grad=True)
    _build("ms")(student, teacher).backward()
    for t in [*student.logits, *student.features]:
        assert t.grad is not None and t.grad.abs().sum() > 0


def test_ms_without_norm_is_plain_soft_target_kl_at_tau_one():
    student, teacher, _ = make_case()
    method = _build("ms", norm="none", weight=1.0, scale_weights=[1.0])
    p_t, p_s = _softmax(_np(teacher.logits[0]), 1), _softmax(_np(student.logits[0]), 1)
    soft_ce = float((-(p_t * np.log(p_s)).sum(1)).mean())
    teacher_entropy = float((-(p_t * np.log(p_t)).sum(1)).mean())
    assert method(student, teacher).item() == pytest.approx(soft_ce - teacher_entropy, rel=1e-4)


def test_at_matches_reference_summed_over_voxels_and_scales():
    student, teacher, _ = make_case()
    expected = 0.0
    for f_s, f_t in zip(student.features, teacher.features):
        a_s = (_np(f_s) ** 2).mean(1).reshape(f_s.shape[0], -1)
        a_t = (_np(f_t) ** 2).mean(1).reshape(f_t.shape[0], -1)
        a_s /= np.linalg.norm(a_s, axis=1, keepdims=True)
        a_t /= np.linalg.norm(a_t, axis=1, keepdims=True)
        expected += float(((a_s - a_t) ** 2).sum(1).mean())
    assert _build("at")(student, teacher).item() == pytest.approx(expected, rel=1e-4)


def test_fitnet_with_identity_adapter_is_ten_times_feature_mse():
    _, teacher, _ = make_case()
    student, _, _ = make_case(student_channels=TEACHER_CHANNELS, seed=99)
    expected = 10 * float(((_np(student.features[0]) - _np(teacher.features[0])) ** 2).mean())
    method = _build("fitnet", student_channels=TEACHER_CHANNELS)
    assert method(student, teacher).item() == pytest.approx(expected, rel=1e-5)


def test_cwd_matches_spatial_softmax_kl_reference():
    student, teacher, _ = make_case()
    tau = 4.0
    y_s, y_t = _np(student.logits[0]), _np(teacher.logits[0])
    b, c = y_s.shape[:2]
    phi_s, phi_t = _softmax(y_s.reshape(b, c, -1) / tau, 2), _softmax(y_t.reshape(b, c, -1) / tau, 2)
    expected = 3.0 * tau**2 * float(_kl_rows(phi_t, phi_s, axis=2).sum()) / (b * c)
    assert _build("cwd")(student, teacher).item() == pytest.approx(expected, rel=1e-4)


def test_dist_matches_pearson_reference_and_stays_in_range():
    student, teacher, _ = make_case()
    y_s = _softmax(_np(student.logits[0]), 1).transpose(0, 2, 3, 4, 1).reshape(-1, NUM_CLASSES)
    y_t = _softmax(_np(teacher.logits[0]), 1).transpose(0, 2, 3, 4, 1).reshape(-1, NUM_CLASSES)
    c_s, c_t = y_s - y_s.mean(1, keepdims=True), y_t - y_t.mean(1, keepdims=True)
    inter = 1 - np.mean((c_s * c_t).sum(1) / (np.linalg.norm(c_s, axis=1) * np.linalg.norm(c_t, axis=1)))
    intra = 1 - np.mean([np.corrcoef(y_s[:, k], y_t[:, k])[0, 1] for k in range(NUM_CLASSES)])
    loss = _build("dist")(student, teacher).item()
    assert loss == pytest.approx(inter + intra, rel=1e-4)
    assert 0 <= loss <= 4


def _class_centre_cosines(f: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    out = np.zeros(labels.shape)
    for b in range(f.shape[0]):
        for k in range(num_classes):
            mask = labels[b] == k
            if mask.any():
                centre = f[b][:, mask].mean(axis=1)
                vox = f[b][:, mask]
                out[b][mask] = centre @ vox / (np.linalg.norm(centre) * np.linalg.norm(vox, axis=0))
    return out


def test_ifvd_matches_per_class_mask_reference_and_ignores_ignore_label():
    student, teacher, target = make_case()
    target = target.clone()
    target[:, :2] = 255
    labels = target.numpy()
    m_s = _class_centre_cosines(_np(student.features[0]), labels, NUM_CLASSES)
    m_t = _class_centre_cosines(_np(teacher.features[0]), labels, NUM_CLASSES)
    expected = 200 * float(((m_s - m_t) ** 2).mean())
    assert _build("ifvd")(student, teacher, target).item() == pytest.approx(expected, rel=1e-4)


def test_emkd_binary_matches_pmd_imd_rad_reference():
    student, teacher, target = make_case()
    binary = (target > 1).long()
    for out in (student, teacher):
        out.logits[:] = [z[:, :2] for z in out.logits]
    z_s, z_t = _np(student.logits[0]), _np(teacher.logits[0])
    pmd = 16 * float(_kl_rows(_softmax(z_t / 4, 1), _softmax(z_s / 4, 1), axis=1).mean())
    imd = rad = 0.0
    for i in (0, 3):
        f_s, f_t = _np(student.features[i]), _np(teacher.features[i])
        a_s = (f_s**4).mean(1).reshape(2, -1)
        a_t = (f_t**4).mean(1).reshape(2, -1)
        a_s /= np.linalg.norm(a_s, axis=1, keepdims=True)
        a_t /= np.linalg.norm(a_t, axis=1, keepdims=True)
        imd += float(((a_s - a_t) ** 2).sum(1).mean())
        labels = labels_at(binary, f_s.shape[2:]).numpy()
        gaps = []
        for b in range(2):
            cos = [_cos(f[b][:, labels[b] == 0].mean(1), f[b][:, labels[b] == 1].mean(1)) for f in (f_s, f_t)]
            gaps.append((cos[0] - cos[1]) ** 2)
        rad += float(np.mean(gaps))
    method = _build("emkd", num_classes=2)
    assert method(student, teacher, binary).item() == pytest.approx(0.1 * pmd + 0.9 * imd + 0.9 * rad, rel=1e-4)


def test_skd_matches_pixel_kl_plus_pooled_node_similarity_reference():
    student, teacher, _ = make_case()
    z_s, z_t = _np(student.logits[0]), _np(teacher.logits[0])
    pixel = float(_kl_rows(_softmax(z_t, 1), _softmax(z_s, 1), axis=1).mean())

    def nodes(f: np.ndarray) -> np.ndarray:
        b, c, d, h, w = f.shape
        pooled = f.reshape(b, c, 2, d // 2, 2, h // 2, 2, w // 2).max(axis=(3, 5, 7)).reshape(b, c, 8)
        unit = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.einsum("bci,bcj->bij", unit, unit)

    pair = float(((nodes(_np(student.features[0])) - nodes(_np(teacher.features[0]))) ** 2).mean())
    assert _build("skd")(student, teacher).item() == pytest.approx(10 * pixel + pair, rel=1e-4)


def test_alignment_resamples_the_teacher_onto_the_student_grid_and_detaches_it():
    s = [torch.randn(1, 2, 8, 8, 8, requires_grad=True), torch.randn(1, 2, 4, 4, 4)]
    t = [torch.randn(1, 3, 4, 8, 8, requires_grad=True), torch.randn(1, 3, 4, 2, 2), torch.randn(1, 3, 2, 2, 2)]
    pairs = paired(s, t)
    assert len(pairs) == 2
    assert [tuple(p[1].shape[2:]) for p in pairs] == [(8, 8, 8), (4, 4, 4)]
    assert pairs[0][0] is s[0] and not pairs[0][1].requires_grad
    labels = torch.tensor([[[[0, 1], [2, 3]]]])
    assert labels_at(labels, (2, 4, 4))[0, 0, 0].tolist() == [0, 0, 1, 1]


def test_chunked_voxel_sums_equal_one_matmul_with_and_without_remainder():
    gen = torch.Generator().manual_seed(3)
    for n in (4096 * 3, 4096 * 3 + 17):
        a = torch.rand(2, 5, n, generator=gen, dtype=torch.float64, requires_grad=True)
        b = torch.rand(2, 7, n, generator=gen, dtype=torch.float64)
        expected = torch.bmm(a, b.transpose(1, 2))
        torch.testing.assert_close(chunked_matmul(a, b, 4096), expected)
        (grad,) = torch.autograd.grad(chunked_matmul(a, b, 4096).sum(), a)
        torch.testing.assert_close(grad, b.sum(dim=1, keepdim=True).expand_as(a))


def test_chunked_prototype_expansion_equals_one_matmul_with_and_without_remainder():
    gen = torch.Generator().manual_seed(3)
    for n in (4096 * 3, 4096 * 3 + 17):
        w = torch.rand(2, 5, 7, generator=gen, dtype=torch.float64, requires_grad=True)
        a = torch.rand(2, 5, n, generator=gen, dtype=torch.float64)
        g = torch.rand(2, 7, n, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(chunked_expand(w, a, 4096), torch.bmm(w.transpose(1, 2), a))
        (grad,) = torch.autograd.grad((chunked_expand(w, a, 4096) * g).sum(), w)
        torch.testing.assert_close(grad, torch.bmm(a, g.transpose(1, 2)))
