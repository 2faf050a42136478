"""DKD, NKD, CIRKD, ReviewKD, Factor Transfer and ACF-BCKD against float64 re-statements of their formulas (each
method's docstring in kd_methods/), and the behaviour of their memories, stages and schedules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt

from kd_methods import create_kd_method
from kd_methods.acf import boundary_masks
from kd_methods.reviewkd import hierarchical_context_loss
from models import SegOutput
from tests.kd_methods.kd_loss_cases import NUM_CLASSES, STUDENT_CHANNELS, TEACHER_CHANNELS, make_case


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _rows(z: torch.Tensor) -> np.ndarray:
    return _np(z).transpose(0, 2, 3, 4, 1).reshape(-1, z.shape[1])


def _build(name: str, student_channels=STUDENT_CHANNELS, **hp):
    torch.manual_seed(0)
    return create_kd_method(name, student_channels, TEACHER_CHANNELS, NUM_CLASSES, **hp).double()


def _case64(**kw):
    return make_case(dtype=torch.float64, **kw)


def test_dkd_is_tau_squared_alpha_tckd_plus_beta_nckd_and_leaves_ignore_labels_out():
    student, teacher, target = _case64()
    target = target.clone()
    target[:, :3] = 255
    tau, alpha, beta = 4.0, 1.0, 8.0
    labels = target.flatten().numpy()
    keep = labels < NUM_CLASSES
    p_s = _softmax(_rows(student.logits[0]) / tau, 1)[keep]
    p_t = _softmax(_rows(teacher.logits[0]) / tau, 1)[keep]
    y = labels[keep]
    tckd = nckd = 0.0
    for ps, pt, k in zip(p_s, p_t, y):
        bs, bt = np.array([ps[k], 1 - ps[k]]), np.array([pt[k], 1 - pt[k]])
        tckd += float((bt * np.log(bt / bs)).sum())
        rest_s, rest_t = np.delete(ps, k) / (1 - ps[k]), np.delete(pt, k) / (1 - pt[k])
        nckd += float((rest_t * np.log(rest_t / rest_s)).sum())
    expected = 0.1 * tau**2 * (alpha * tckd + beta * nckd) / len(y)
    assert _build("dkd")(student, teacher, target).item() == pytest.approx(expected, rel=1e-9)


def test_dkd_with_equal_weights_and_a_confident_target_approaches_hinton_kd():
    # KD = TCKD + (1 - p_T,y) NCKD per voxel (the paper's eq. 5): with p_T,y -> 0 at every voxel, DKD(1, 1) = KD.
    student, teacher, _ = _case64()
    target = teacher.logits[0].argmin(dim=1)
    for out in (student, teacher):
        out.logits[0] = out.logits[0] + 40.0 * torch.nn.functional.one_hot(target, NUM_CLASSES).movedim(-1, 1) * -1
    dkd = _build("dkd", alpha=1.0, beta=1.0, tau=1.0, weight=1.0)(student, teacher, target).item()
    kd = _build("kd")(student, teacher).item()
    assert dkd == pytest.approx(kd, rel=1e-6)


def test_nkd_is_the_official_target_cross_entropy_plus_normalised_non_target_term():
    student, teacher, target = _case64()
    temp, gamma = 2.0, 1.5
    y = target.flatten().numpy()
    z_s, z_t = _rows(student.logits[0]), _rows(teacher.logits[0])
    idx = np.arange(len(y))
    target_term = -np.mean(_softmax(z_t, 1)[idx, y] * np.log(_softmax(z_s, 1)[idx, y]))
    mask = np.ones_like(z_s, dtype=bool)
    mask[idx, y] = False
    rest_s = _softmax(z_s[mask].reshape(len(y), -1) / temp, 1)
    rest_t = _softmax(z_t[mask].reshape(len(y), -1) / temp, 1)
    non_target = -gamma * temp**2 * np.mean((rest_t * np.log(rest_s)).sum(1))
    loss = _build("nkd", temp=temp)(student, teacher, target).item()
    assert loss == pytest.approx(target_term + non_target, rel=1e-9)


def _pool2(f: np.ndarray) -> np.ndarray:
    b, c, d, h, w = f.shape
    return f.reshape(b, c, d // 2, 2, h // 2, 2, w // 2, 2).mean(axis=(3, 5, 7))


def _unit(f: np.ndarray, axis: int) -> np.ndarray:
    return f / np.linalg.norm(f, axis=axis, keepdims=True)


def _kl_rows(scores_s: np.ndarray, scores_t: np.ndarray, tau: float) -> float:
    p_s, p_t = _softmax(scores_s / tau, 1), _softmax(scores_t / tau, 1)
    return float((p_t * np.log(p_t / p_s)).sum(1).mean())


def test_cirkd_pair_term_averages_all_image_pairs_of_pooled_normalised_similarities():
    student, teacher, target = _case64(batch=3)
    method = _build("cirkd", scale=1, kd_weight=0.0, pixel_weight=0.0, region_weight=0.0, pixel_memory_size=8,
                    region_memory_size=4)  # fmt: skip
    u_s = _unit(_pool2(_np(student.features[1])), 1).reshape(3, STUDENT_CHANNELS[1], -1)
    u_t = _unit(_pool2(_np(teacher.features[1])), 1).reshape(3, TEACHER_CHANNELS[1], -1)
    expected = np.mean([_kl_rows(u_s[i].T @ u_s[j], u_t[i].T @ u_t[j], 1.0) for i in range(3) for j in range(3)])
    assert method(student, teacher, target).item() == pytest.approx(expected, rel=1e-9)


def test_cirkd_memory_terms_match_the_contrast_kl_over_the_updated_memory():
    student, teacher, target = _case64()
    hp = {"scale": 1, "kd_weight": 0.0, "pair_weight": 0.0, "pixel_memory_size": 40, "region_memory_size": 6,
          "pixel_contrast_size": 40, "region_contrast_size": 6, "ignore_index": 0}  # fmt: skip
    method = _build("cirkd", **hp)
    loss = method(student, teacher, target).item()
    # every slot is sampled, so the random order of the sample does not change the KL over it
    pixels = _np(method.memory.pixels).reshape(-1, TEACHER_CHANNELS[1])
    regions = _np(method.memory.regions).reshape(-1, TEACHER_CHANNELS[1])
    with torch.no_grad():
        projected = method.project(torch.nn.functional.avg_pool3d(student.features[1], 2))
    labels = target[:, ::4, ::4, ::4].flatten().numpy()  # 4-voxel label blocks: nearest at 1/4 is a stride
    anchors = labels != 0
    s_rows = _unit(_np(projected), 1).transpose(0, 2, 3, 4, 1).reshape(-1, TEACHER_CHANNELS[1])[anchors]
    t_rows = _unit(_pool2(_np(teacher.features[1])), 1).transpose(0, 2, 3, 4, 1).reshape(-1, TEACHER_CHANNELS[1])
    t_rows = t_rows[anchors]
    expected = sum(0.1 * _kl_rows(s_rows @ bank.T / 0.1, t_rows @ bank.T / 0.1, 1.0) for bank in (pixels, regions))
    assert loss == pytest.approx(expected, rel=1e-9)


def test_cirkd_memory_stores_each_class_mean_and_sixteen_voxels_per_image_and_wraps_around():
    student, teacher, target = _case64(batch=1)
    method = _build("cirkd", scale=1, pixel_memory_size=20, region_memory_size=2, ignore_index=0)
    method(student, teacher, target)
    pooled = _unit(_pool2(_np(teacher.features[1])), 1)[0].reshape(TEACHER_CHANNELS[1], -1)
    labels = target[0, ::4, ::4, ::4].flatten().numpy()
    present = sorted(set(labels.tolist()) - {0})
    assert method.memory.region_ptr.tolist() == [0] + [1 if k in present else 0 for k in range(1, NUM_CLASSES)]
    for k in present:
        mean = _unit(pooled[:, labels == k].mean(axis=1), 0)
        np.testing.assert_allclose(_np(method.memory.regions[k, 0]), mean, rtol=1e-12)
        stored = _np(method.memory.pixels[k, : min(16, (labels == k).sum())])
        candidates = _unit(pooled[:, labels == k], 0).T
        assert all(np.abs(candidates - row).max(axis=1).min() < 1e-12 for row in stored)
    method(student, teacher, target)  # 16 + 16 >= 20 slots: the official wrap-around writes the last 16, back to 0
    assert all(int(method.memory.pixel_ptr[k]) == (0 if (labels == k).sum() >= 10 else 2 * (labels == k).sum())
               for k in present)  # fmt: skip
    assert all(int(method.memory.region_ptr[k]) == 0 for k in present)


def _hcl_reference(s: np.ndarray, t: np.ndarray) -> float:
    loss, share, total = float(((s - t) ** 2).mean()), 1.0, 1.0
    for level in (4, 2, 1):
        if level >= min(s.shape[2:]):
            continue
        share /= 2
        pooled = [x.reshape(*x.shape[:2], level, x.shape[2] // level, level, x.shape[3] // level, level,
                            x.shape[4] // level).mean(axis=(3, 5, 7)) for x in (s, t)]  # fmt: skip
        loss += share * float(((pooled[0] - pooled[1]) ** 2).mean())
        total += share
    return loss / total


@pytest.mark.parametrize("size", [(8, 16, 16), (2, 4, 4)])
def test_hierarchical_context_loss_pools_to_4_2_1_cells_below_the_smallest_side(size):
    gen = torch.Generator().manual_seed(5)
    s, t = (torch.randn(2, 3, *size, generator=gen, dtype=torch.float64) for _ in range(2))
    assert hierarchical_context_loss(s, t).item() == pytest.approx(_hcl_reference(_np(s), _np(t)), rel=1e-12)


def test_reviewkd_sums_hcl_of_the_fused_outputs_coarse_to_fine():
    student, teacher, _ = _case64()
    method = _build("reviewkd", mid_channels=8)
    loss = method(student, teacher).item()
    expected, residual = 0.0, None
    with torch.no_grad():
        for scale in (3, 2, 1, 0):
            fusion = method.fusions[scale]
            x = fusion.reduce(student.features[scale])
            if residual is not None:
                y = torch.nn.functional.interpolate(residual, size=x.shape[2:], mode="nearest")
                gate = fusion.attention(torch.cat([x, y], 1))
                x = x * gate[:, :1] + y * gate[:, 1:]
            residual = x
            expected += _hcl_reference(_np(fusion.expand(x)), _np(teacher.features[scale]))
    assert method.fusions[3].attention is None and loss == pytest.approx(expected, rel=1e-9)


def test_ft_trains_the_paraphraser_first_then_distils_normalised_factors_with_l1():
    student, teacher, _ = _case64(requires_grad=True)
    method = _build("ft", paraphraser_iterations=2, scale=1)
    f_t = teacher.features[1]
    for _ in range(2):
        with torch.no_grad():
            rebuilt = method.paraphraser["decoder"](method.paraphraser["encoder"](f_t))
        loss = method(student, teacher)
        assert loss.item() == pytest.approx(float(((_np(rebuilt) - _np(f_t)) ** 2).mean()), rel=1e-9)
        loss.backward()
        assert student.features[1].grad is None
    assert int(method.state_dict()["calls"]) == 2 and not method.pretraining
    with torch.no_grad():
        factor_s = _np(method.translator(student.features[1])).reshape(2, -1)
        factor_t = _np(method.paraphraser["encoder"](f_t)).reshape(2, -1)
    expected = np.abs(_unit(factor_s, 1) - _unit(factor_t, 1)).mean()
    loss = method(student, teacher)
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    method.paraphraser.zero_grad()
    loss.backward()
    assert student.features[1].grad.abs().sum() > 0
    assert all(p.grad is None for p in method.paraphraser.parameters())


def _boundary_reference(labels: np.ndarray, k: int) -> np.ndarray:
    inside = np.pad(labels == k, 1).astype(int)
    d, h, w = labels.shape
    count = sum(inside[1 + a : 1 + a + d, 1 + b : 1 + b + h, 1 + c : 1 + c + w]
                for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) != (0, 0, 0))  # fmt: skip
    return (count > 0) & (count < 26)


def test_acf_boundary_masks_are_voxels_with_some_but_not_all_26_neighbours_in_the_class():
    _, _, target = make_case()
    masks = boundary_masks(target, NUM_CLASSES).numpy()
    for b in range(target.shape[0]):
        for k in range(NUM_CLASSES):
            np.testing.assert_array_equal(masks[b, k], _boundary_reference(target[b].numpy(), k))


def _attention_gap(x: np.ndarray, y: np.ndarray) -> float:
    a_x = _unit((x**2).mean(1).reshape(len(x), -1), 1)
    a_y = _unit((y**2).mean(1).reshape(len(y), -1), 1)
    return float(((a_x - a_y) ** 2).mean())


def test_acf_is_attention_corrected_at_plus_boundary_kd_summed_over_images_and_classes():
    student, teacher, target = _case64()
    method = _build("acf", scale=1, alpha=0.7, beta=1.3)
    loss = method(student, teacher, target).item()
    with torch.no_grad():
        att = method.attention(student.features[1])
        corrected, residual = _np(student.features[1] * att), _np(method.residual(att))
    f_t = _np(teacher.features[1])
    acf = 25000 * (0.7 * _attention_gap(corrected, f_t) + 1.3 * _attention_gap(residual, f_t))
    p_s, p_t = _softmax(_np(student.logits[0]), 1), _softmax(_np(teacher.logits[0]), 1)
    kl = (p_t * np.log(p_t / p_s)).sum(1)
    boundary = 0.0
    for b in range(2):
        for k in range(NUM_CLASSES):
            mask = _boundary_reference(target[b].numpy(), k)
            if mask.any():
                boundary += kl[b][mask].sum() / (NUM_CLASSES * mask.sum())
    assert loss == pytest.approx(acf + boundary, rel=1e-9)


def _log_hausdorff_reference(z_s: np.ndarray, z_t: np.ndarray) -> float:
    p = _softmax(z_s, 1)
    onehot = np.eye(z_s.shape[1])[z_t.argmax(1)].transpose(0, 4, 1, 2, 3)

    def field(x: np.ndarray) -> np.ndarray:
        fg = x > 0.5
        if not fg.any() or fg.all():
            return np.zeros(x.shape)
        return distance_transform_edt(fg) + distance_transform_edt(~fg)

    per_class = []
    for k in range(1, z_s.shape[1]):
        d_p = np.stack([field(p[b, k]) for b in range(len(p))])
        d_t = np.stack([field(onehot[b, k]) for b in range(len(p))])
        per_class.append(((p[:, k] - onehot[:, k]) ** 2 * (d_p**2 + d_t**2)).mean())
    return float(np.log(np.mean(per_class) + 1))


def test_acf_moves_weight_from_boundary_kd_to_log_hausdorff_after_each_epoch_of_calls():
    student, teacher, target = _case64()
    method = _build("acf", gamma=0.25, eta_min=0.4, epoch_iterations=2)
    shares = []
    for _ in range(7):
        shares.append(method.boundary_share())
        method(student, teacher, target)
    assert shares == [1.0, 1.0, 0.75, 0.75, 0.5, 0.5, 0.4]
    plain = _build("acf", gamma=0.0)(student, teacher, target).item()  # share 1: no Hausdorff term
    masks = boundary_masks(target, NUM_CLASSES)
    from kd_methods.acf import boundary_kd

    bkd = boundary_kd(student.logits[0], teacher.logits[0], masks, 1.0).item()
    hd = _log_hausdorff_reference(_np(student.logits[0]), _np(teacher.logits[0]))
    assert method(student, teacher, target).item() == pytest.approx(plain - 0.6 * bkd + 0.6 * hd, rel=1e-6)


@pytest.mark.parametrize("name", ["dkd", "cirkd", "acf"])
def test_label_terms_are_zero_at_equality(name):
    _, teacher, target = _case64(student_channels=TEACHER_CHANNELS)
    student = SegOutput([t.clone() for t in teacher.logits], [f.clone() for f in teacher.features])
    hp = {"cirkd": {"pixel_weight": 0.0, "region_weight": 0.0, "pixel_memory_size": 8, "region_memory_size": 4},
          "acf": {"alpha": 0.0, "beta": 0.0}}.get(name, {})  # fmt: skip
    method = _build(name, student_channels=TEACHER_CHANNELS, **hp)
    assert abs(method(student, teacher, target).item()) < 1e-12
