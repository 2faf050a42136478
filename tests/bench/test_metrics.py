import math

import numpy as np
import pandas as pd
import pytest
from medpy.metric.binary import dc as medpy_dc
from medpy.metric.binary import hd95 as medpy_hd95
from scipy import ndimage

from bench.errors import BenchError
from bench.metrics import (
    EMPTY_MASK_POLICY,
    dice,
    evaluate_case,
    evaluate_cases,
    hd95,
    image_diagonal,
    summarize,
)
from bench.store import PER_CASE_COLUMNS

SPACING = (2.5, 0.8, 0.8)
SHAPE = (20, 36, 40)


def _blob_labels(seed: int, shape=SHAPE, n_labels: int = 4) -> np.ndarray:
    """Irregular organs (thresholded smooth noise) with several components each, some touching the borders."""
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, np.uint8)
    for label in range(1, n_labels + 1):
        field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=2.0)
        out[(field > np.quantile(field, 0.93)) & (out == 0)] = label
    return out


def _perturb(labels: np.ndarray, seed: int) -> np.ndarray:
    """A plausible prediction: shifted, with some voxels flipped to other labels."""
    rng = np.random.default_rng(seed)
    pred = np.roll(labels, shift=(1, -2, 1), axis=(0, 1, 2))
    flip = rng.random(labels.shape) < 0.02
    pred[flip] = rng.integers(0, labels.max() + 1, flip.sum())
    return pred


def _border_labels() -> np.ndarray:
    """One organ on each face and corner of the volume, so that crops are clipped by the image."""
    gt = np.zeros(SHAPE, np.uint8)
    gt[0:4, 5:15, 5:15] = 1  # first z slice
    gt[-3:, 20:30, 25:35] = 2  # last z slice
    gt[8:14, 0:6, 0:5] = 3  # y = 0 and x = 0 edge
    gt[5:12, -7:, -4:] = 4  # y and x far faces
    gt[-2:, -2:, -2:] = 5  # far corner
    return gt


def test_hd95_matches_medpy_on_anisotropic_spacing():
    gt = _blob_labels(0)
    pred = _perturb(gt, 1)
    for label in range(1, 5):
        assert hd95(pred == label, gt == label, SPACING) == pytest.approx(
            medpy_hd95(pred == label, gt == label, voxelspacing=SPACING), abs=1e-6
        )


def test_evaluate_case_matches_medpy_for_every_label_of_a_volume():
    gt = _blob_labels(2)
    pred = _perturb(gt, 3)
    rows = evaluate_case("c1", pred, gt, SPACING, {0: "background", 1: "a", 2: "b", 3: "c", 4: "d"})
    assert [r["label"] for r in rows] == [1, 2, 3, 4]
    for row in rows:
        p, g = pred == row["label"], gt == row["label"]
        assert row["status"] == "ok"
        assert row["hd95"] == pytest.approx(medpy_hd95(p, g, voxelspacing=SPACING), abs=1e-6)
        assert row["dice"] == pytest.approx(medpy_dc(p, g), abs=1e-12)


def test_cropping_is_exact_for_organs_touching_the_volume_border():
    gt = _border_labels()
    pred = np.zeros_like(gt)
    pred[0:3, 6:16, 4:15] = 1
    pred[-4:, 21:30, 25:35] = 2
    pred[9:14, 0:7, 0:4] = 3
    pred[5:13, -6:, -5:] = 4
    pred[-3:, -1:, -3:] = 5
    rows = evaluate_case("border", pred, gt, SPACING, {k: f"o{k}" for k in range(1, 6)})
    for row in rows:
        expected = medpy_hd95(pred == row["label"], gt == row["label"], voxelspacing=SPACING)
        assert row["hd95"] == pytest.approx(expected, abs=1e-6), row


def test_hd95_of_two_plates_offset_along_z_is_the_offset_in_mm():
    gt = np.zeros(SHAPE, bool)
    pred = np.zeros(SHAPE, bool)
    gt[4, 10:20, 10:20] = True
    pred[7, 10:20, 10:20] = True  # one voxel thick: every voxel is surface, each 3 slices from its partner
    assert hd95(pred, gt, SPACING) == pytest.approx(3 * 2.5, abs=1e-12)


def test_hd95_of_plates_offset_in_z_and_x_takes_the_diagonal_of_the_unmatched_column():
    gt = np.zeros(SHAPE, bool)
    pred = np.zeros(SHAPE, bool)
    gt[4, 10:20, 10:20] = True
    pred[6, 10:20, 11:21] = True
    # 10 % of the surface voxels (one column of ten) have no partner straight across: p95 falls on them.
    assert hd95(pred, gt, SPACING) == pytest.approx(math.hypot(2 * 2.5, 0.8), abs=1e-12)


def test_hd95_of_a_voxel_inside_a_3_cube_is_the_corner_distance():
    gt = np.zeros(SHAPE, bool)
    pred = np.zeros(SHAPE, bool)
    gt[10, 10, 10] = True
    pred[9:12, 9:12, 9:12] = True
    # 27 pooled distances; the 8 corners are the largest, so the 95th percentile is the corner distance.
    assert hd95(pred, gt, SPACING) == pytest.approx(math.sqrt(2.5**2 + 0.8**2 + 0.8**2), abs=1e-12)


def test_dice_of_half_overlapping_cubes():
    a = np.zeros((8, 8, 8), bool)
    b = np.zeros((8, 8, 8), bool)
    a[0:4, 0:4, 0:4] = True
    b[0:4, 0:4, 2:6] = True
    assert dice(a, b) == pytest.approx(0.5)


def test_empty_masks_follow_the_policy_without_raising():
    empty = np.zeros(SHAPE, bool)
    organ = np.zeros(SHAPE, bool)
    organ[3:6, 3:6, 3:6] = True
    diagonal = math.sqrt((20 * 2.5) ** 2 + (36 * 0.8) ** 2 + (40 * 0.8) ** 2)
    assert image_diagonal(SHAPE, SPACING) == pytest.approx(diagonal)
    assert math.isnan(dice(empty, empty)) and math.isnan(hd95(empty, empty, SPACING))
    assert dice(empty, organ) == 0.0 and hd95(empty, organ, SPACING) == pytest.approx(diagonal)
    assert dice(organ, empty) == 0.0 and hd95(organ, empty, SPACING) == pytest.approx(diagonal)
    assert "both_empty" in EMPTY_MASK_POLICY and "missed" in EMPTY_MASK_POLICY


def test_evaluate_case_labels_missed_false_positive_and_both_empty():
    gt = np.zeros(SHAPE, np.uint8)
    pred = np.zeros(SHAPE, np.uint8)
    gt[2:6, 2:8, 2:8] = 1
    pred[2:6, 2:8, 3:9] = 1
    gt[10:14, 10:20, 10:20] = 2  # missed
    pred[15:18, 25:30, 25:30] = 3  # false positive
    rows = evaluate_case("c", pred, gt, SPACING, {0: "bg", 1: "liver", 2: "spleen", 3: "kidney", 4: "pancreas"})
    by_name = {r["name"]: r for r in rows}
    diagonal = image_diagonal(SHAPE, SPACING)
    assert [r["status"] for r in rows] == ["ok", "missed", "false_positive", "both_empty"]
    assert by_name["spleen"]["dice"] == 0.0 and by_name["spleen"]["hd95"] == pytest.approx(diagonal)
    assert by_name["kidney"]["dice"] == 0.0 and by_name["kidney"]["hd95"] == pytest.approx(diagonal)
    assert math.isnan(by_name["pancreas"]["dice"]) and math.isnan(by_name["pancreas"]["hd95"])


def test_summarize_includes_penalties_in_means_and_counts_every_empty_case():
    gt = np.zeros(SHAPE, np.uint8)
    gt[2:6, 2:8, 2:8] = 1
    gt[10:14, 10:20, 10:20] = 2
    missed = gt.copy()
    missed[missed == 2] = 0
    labels = {1: "liver", 2: "spleen", 3: "kidney"}
    df = evaluate_cases([("perfect", gt, gt, SPACING), ("missed", missed, gt, SPACING)], labels)
    s = summarize(df)
    diagonal = image_diagonal(SHAPE, SPACING)
    # per-case means: perfect (1, 0), missed ((1 + 0) / 2, (0 + diagonal) / 2); kidney is both-empty everywhere.
    assert s["dice_mean"] == pytest.approx((1.0 + 0.5) / 2)
    assert s["dice_std"] == pytest.approx(0.25)
    assert s["hd95_mean"] == pytest.approx(diagonal / 4)
    assert (s["n_cases"], s["n_missed"], s["n_false_positive"], s["n_both_empty"]) == (2, 1, 0, 2)
    assert s["per_organ"]["spleen"]["dice"] == pytest.approx(0.5)
    assert s["per_organ"]["spleen"]["n_missed"] == 1
    assert s["per_organ"]["kidney"]["n_scored"] == 0 and math.isnan(s["per_organ"]["kidney"]["dice"])


def test_evaluate_cases_with_two_workers_equals_in_process():
    items = [(f"case{i}", _perturb(_blob_labels(10 + i), 20 + i), _blob_labels(10 + i), SPACING) for i in range(3)]
    items.append(("border", _perturb(_border_labels(), 5), _border_labels(), SPACING))
    serial = evaluate_cases(items, None)
    parallel = evaluate_cases(items, None, workers=2)
    assert list(serial.columns) == PER_CASE_COLUMNS
    pd.testing.assert_frame_equal(serial, parallel)


def test_evaluate_cases_without_labels_adds_both_empty_rows_for_labels_seen_elsewhere():
    a = np.zeros((6, 6, 6), np.uint8)
    b = a.copy()
    a[1:3, 1:3, 1:3] = 1
    b[2:4, 2:4, 2:4] = 2
    empty = np.zeros_like(a)
    df = evaluate_cases([("a", a, a, (1, 1, 1)), ("b", b, b, (1, 1, 1)), ("none", empty, empty, (1, 1, 1))], None)
    assert list(zip(df["case"], df["label"], df["status"])) == [
        ("a", 1, "ok"),
        ("a", 2, "both_empty"),
        ("b", 1, "both_empty"),
        ("b", 2, "ok"),
        ("none", 1, "both_empty"),
        ("none", 2, "both_empty"),
    ]
    assert set(df["name"]) == {"label_1", "label_2"}


def test_evaluate_case_rejects_mismatched_shapes_and_float_volumes():
    with pytest.raises(BenchError, match="shape"):
        evaluate_case("c", np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 5), np.uint8), (1, 1, 1), None)
    with pytest.raises(BenchError, match="integer"):
        evaluate_case("c", np.zeros((4, 4, 4), np.float32), np.zeros((4, 4, 4), np.uint8), (1, 1, 1), None)
