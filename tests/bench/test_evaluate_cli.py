import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from medpy.metric.binary import dc as medpy_dc
from medpy.metric.binary import hd95 as medpy_hd95

from bench.data.layouts import parse_labels_file
from bench.errors import BenchError
from bench.metrics import image_diagonal

SHAPE = (12, 20, 24)  # array axes (z, y, x)
SPACING_XYZ = (0.8, 0.8, 2.5)
SPACING_ZYX = (2.5, 0.8, 0.8)


def _write(path: Path, array: np.ndarray, spacing=SPACING_XYZ, origin=(-10.0, 5.0, 30.0)) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))


def _cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    gt_a = np.zeros(SHAPE, np.uint8)
    gt_a[2:7, 3:12, 4:14] = 1
    gt_a[0:4, 14:20, 16:24] = 2  # touches three borders
    pred_a = np.zeros(SHAPE, np.uint8)
    pred_a[3:7, 4:12, 4:15] = 1
    pred_a[0:5, 15:20, 15:24] = 2
    gt_b = np.zeros(SHAPE, np.uint8)
    gt_b[5:9, 5:10, 5:10] = 1
    gt_b[8:11, 12:16, 2:6] = 2
    pred_b = np.zeros(SHAPE, np.uint8)
    pred_b[5:9, 6:10, 5:11] = 1  # organ 2 missed
    return {"case_a": (pred_a, gt_a), "case_b": (pred_b, gt_b)}


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    for case, (pred, gt) in _cases().items():
        _write(pred_dir / f"{case}.nii.gz", pred)
        _write(gt_dir / f"{case}.nii.gz", gt)
    return pred_dir, gt_dir


def _bench(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "bench", "evaluate", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_evaluate_writes_long_csv_matching_medpy_and_prints_the_summary(folders, tmp_path):
    pred_dir, gt_dir = folders
    dataset = tmp_path / "dataset.json"
    dataset.write_text(json.dumps({"labels": {"background": 0, "liver": 1, "spleen": 2, "pancreas": 3}}))
    out = tmp_path / "results" / "eval.csv"
    args = ["--pred", str(pred_dir), "--gt", str(gt_dir), "--labels", str(dataset), "--out", str(out)]
    result = _bench(*args, "--workers", "2")
    assert result.returncode == 0, result.stderr
    df = pd.read_csv(out)
    assert list(df.columns) == ["case", "label", "name", "dice", "hd95", "status"]
    assert len(df) == 6
    for case, (pred, gt) in _cases().items():
        for label in (1, 2):
            row = df[(df["case"] == case) & (df["label"] == label)].iloc[0]
            if case == "case_b" and label == 2:
                assert row["status"] == "missed" and row["dice"] == 0.0
                assert row["hd95"] == pytest.approx(image_diagonal(SHAPE, SPACING_ZYX), abs=1e-6)
                continue
            assert row["status"] == "ok"
            assert row["dice"] == pytest.approx(medpy_dc(pred == label, gt == label), abs=1e-9)
            assert row["hd95"] == pytest.approx(medpy_hd95(pred == label, gt == label, SPACING_ZYX), abs=1e-6)
    pancreas = df[df["name"] == "pancreas"]
    assert (pancreas["status"] == "both_empty").all() and pancreas["dice"].isna().all()
    assert "liver" in result.stdout and "spleen" in result.stdout and "mean over cases" in result.stdout
    assert "missed" in result.stdout and "Traceback" not in result.stderr


def test_mismatched_spacing_is_an_error_naming_the_case(folders):
    pred_dir, gt_dir = folders
    pred, _ = _cases()["case_b"]
    _write(pred_dir / "case_b.nii.gz", pred, spacing=(0.8, 0.8, 3.0))
    result = _bench("--pred", str(pred_dir), "--gt", str(gt_dir), "--workers", "2")
    assert result.returncode == 2
    assert result.stderr.startswith("bench evaluate: error: case case_b")
    assert "spacing" in result.stderr and "Traceback" not in result.stderr


def test_missing_prediction_is_an_error_naming_the_case_and_writes_nothing(folders, tmp_path):
    pred_dir, gt_dir = folders
    (pred_dir / "case_a.nii.gz").unlink()
    out = tmp_path / "eval.csv"
    result = _bench("--pred", str(pred_dir), "--gt", str(gt_dir), "--out", str(out))
    assert result.returncode == 2
    assert "no prediction for case(s) case_a" in result.stderr
    assert not out.exists()


def test_labels_file_accepts_nnunet_msd_and_name_value_lines(tmp_path):
    nnunet = tmp_path / "nnunet.json"
    nnunet.write_text(json.dumps({"labels": {"background": 0, "liver": 1, "spleen": 2}}))
    msd = tmp_path / "msd.json"
    msd.write_text(json.dumps({"labels": {"0": "background", "1": "liver", "2": "spleen"}}))
    expected = {0: "background", 1: "liver", 2: "spleen"}
    lines = tmp_path / "labels.txt"
    lines.write_text("liver=1\nspleen=2\n")
    assert parse_labels_file(nnunet) == expected
    assert parse_labels_file(msd) == expected
    assert parse_labels_file(lines) == expected
    regions = tmp_path / "regions.json"
    regions.write_text(json.dumps({"labels": {"background": 0, "tumour": [1, 2]}}))
    with pytest.raises(BenchError, match=r"regions\.json"):
        parse_labels_file(regions)


def test_float_and_mha_masks_are_read_and_cases_matched_by_name(tmp_path):
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    gt = np.zeros(SHAPE, np.uint8)
    gt[2:6, 2:6, 2:6] = 1
    _write(gt_dir / "c1.mha", gt)
    _write(pred_dir / "c1.nii", gt.astype(np.float32))
    result = _bench("--pred", str(pred_dir), "--gt", str(gt_dir), "--out", str(tmp_path / "e.csv"))
    assert result.returncode == 0, result.stderr
    df = pd.read_csv(tmp_path / "e.csv")
    assert df[["case", "name", "status"]].values.tolist() == [["c1", "label_1", "ok"]]
    assert df["dice"].iloc[0] == 1.0 and df["hd95"].iloc[0] == 0.0 and not math.isnan(df["hd95"].iloc[0])
