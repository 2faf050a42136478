"""``bench evaluate --pred-labels``: masks predicted by a model trained on one data set (FLARE22's label values)
scored on another's ground truth (AbdomenCT-1K's) on the organs the two share, named canonically."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.data.organs import shared_organs
from bench.data.public_sets import ABDOMENCT1K_LABELS, FLARE22_LABELS
from tests.bench.public_replicas import SHAPE, write
from tests.bench.runutil import bench_cmd


def test_sides_score_the_whole_and_unshared_organs_are_left_out() -> None:
    to_gt, shared = shared_organs(FLARE22_LABELS, ABDOMENCT1K_LABELS)
    # FLARE22: liver 1, right kidney 2, spleen 3, pancreas 4, left kidney 13; AbdomenCT-1K: liver 1, kidney 2,
    # spleen 3, pancreas 4. FLARE22's aorta, IVC, adrenals, gallbladder, esophagus, stomach, duodenum: not shared.
    assert to_gt == {1: 1, 2: 2, 3: 3, 4: 4, 13: 2}
    assert shared == {1: "liver", 2: "kidney", 3: "spleen", 4: "pancreas"}


def test_evaluate_scores_another_data_sets_predictions_on_the_shared_organs(tmp_path: Path) -> None:
    gt, pred = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    gt[0:4, 0:4, 0:4] = 1  # liver
    gt[0:4, 8:12, 0:4] = gt[0:4, 8:12, 8:12] = 2  # kidney, both sides
    gt[4:8, 0:4, 0:4] = 3  # spleen, 64 voxels
    gt[4:8, 8:12, 8:12] = 4  # pancreas, not predicted
    pred[0:4, 0:4, 0:4] = 1  # liver
    pred[0:4, 8:12, 0:4], pred[0:4, 8:12, 8:12] = 2, 13  # right and left kidney
    pred[4:6, 0:4, 0:4] = 3  # half the spleen
    pred[4:8, 12:16, 0:4] = 5  # aorta: AbdomenCT-1K does not label it
    write(tmp_path / "gt" / "Case_00001.nii.gz", gt)
    write(tmp_path / "pred" / "Case_00001.nii.gz", pred)
    (tmp_path / "gt.txt").write_text("liver=1\nkidney=2\nspleen=3\npancreas=4\n")
    spec = {"labels": {str(k): v for k, v in FLARE22_LABELS.items()}}  # as a run's preprocessing.json holds them
    (tmp_path / "preprocessing.json").write_text(json.dumps(spec))
    proc = subprocess.run(
        bench_cmd("evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                  "--labels", str(tmp_path / "gt.txt"), "--pred-labels", str(tmp_path / "preprocessing.json"),
                  "--out", str(tmp_path / "eval.csv")),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "scoring the 4 shared organ(s): liver, kidney, spleen, pancreas" in proc.stderr
    rows = pd.read_csv(tmp_path / "eval.csv").set_index("name")
    assert list(rows.index) == ["liver", "kidney", "spleen", "pancreas"]
    assert rows["dice"].tolist() == pytest.approx([1.0, 1.0, 2 * 32 / (32 + 64), 0.0])
    assert rows.loc["pancreas", "status"] == "missed"
