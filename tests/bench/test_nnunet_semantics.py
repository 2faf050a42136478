"""nnU-Net v2's semantics kept: the ``ignore`` label is no class and counts in neither the loss nor the scores;
``channel_names`` choose each channel's normalisation."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.data.layouts import load_dataset
from bench.data.preprocess import PreprocessSettings, _class_locations, preprocess_case
from bench.training.losses import SoftDiceCELoss
from tests.bench.public_replicas import ct_of, organ_map, write
from tests.bench.runutil import TINY_RUN, bench_cmd

IGNORE = 255


def _golden_loss(logits: np.ndarray, target: np.ndarray, ignore: int, smooth: float = 1e-5) -> float:
    """Soft Dice + cross-entropy over the voxels whose target is not ``ignore``, in float64 with numpy."""
    keep = target != ignore
    shifted = logits - logits.max(1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    probs = np.exp(log_probs)
    known = np.where(keep, target, 0)
    onehot = np.stack([(known == k) & keep for k in range(logits.shape[1])], 1).astype(np.float64)
    ce = -(np.take_along_axis(log_probs, known[:, None], 1)[:, 0] * keep).sum() / keep.sum()
    p = probs * keep[:, None]
    axes = tuple(range(2, logits.ndim))
    dice = (2 * (p * onehot).sum(axes) + smooth) / (p.sum(axes) + onehot.sum(axes) + smooth)
    return float(1 - dice[:, 1:].mean() + ce)


def test_the_loss_leaves_the_ignore_label_out_of_dice_and_cross_entropy() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4, 4, 4))
    target = rng.integers(0, 3, size=(2, 4, 4, 4))
    target[:, :2] = IGNORE
    got = SoftDiceCELoss(ignore_label=IGNORE)(torch.from_numpy(logits).float(), torch.from_numpy(target))
    assert got.item() == pytest.approx(_golden_loss(logits, target, IGNORE), rel=1e-5)


def test_a_patch_of_ignored_voxels_alone_adds_only_the_empty_dice_term() -> None:
    logits = torch.randn(1, 3, 4, 4, 4)
    loss = SoftDiceCELoss(ignore_label=IGNORE)(logits, torch.full((1, 4, 4, 4), IGNORE))
    assert loss.item() == pytest.approx(0.0, abs=1e-6)  # both classes absent everywhere: Dice ~1, no CE voxels


def _nnunet_set(root: Path, cases: int = 4) -> Path:
    """Two channels (CT, and a map already in [0, 1] marked noNorm) and labels with an ignore region."""
    for n in range(cases):
        label = organ_map([1, 2], n)
        label[:, -3:, :] = IGNORE  # an unannotated band, as in sparse annotations
        write(root / "imagesTr" / f"c{n}_0000.nii.gz", ct_of(np.minimum(label, 2), n))
        write(root / "imagesTr" / f"c{n}_0001.nii.gz", np.linspace(0, 1, label.size).reshape(label.shape))
        write(root / "labelsTr" / f"c{n}.nii.gz", label)
    meta = {
        "channel_names": {"0": "CT", "1": "noNorm"},
        "labels": {"background": 0, "liver": 1, "spleen": 2, "ignore": IGNORE},
        "numTraining": cases,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_the_ignore_label_is_no_organ_and_channel_names_choose_normalisation(tmp_path: Path) -> None:
    ds = load_dataset(_nnunet_set(tmp_path))
    assert ds.labels == {0: "background", 1: "liver", 2: "spleen"} and ds.ignore_label == IGNORE
    assert ds.channel_norms == ("ct", "none")
    stats = {"channels": [{"mean": 30.0, "std": 10.0, "p00_5": 0.0, "p99_5": 60.0}] * 2}
    settings = PreprocessSettings(keep_labels=(1,), ignore_label=IGNORE, channel_norms=ds.channel_norms, crop=False)
    image, label, _ = preprocess_case(ds.cases[0], settings, stats)
    written = organ_map([1, 2], 0)
    written[:, -3:, :] = IGNORE
    # LPS from the identity direction flips nothing but y and x: compare values, not positions, where it matters.
    assert sorted(np.unique(label).tolist()) == [0, 1, IGNORE]  # spleen dropped (keep_labels), ignore kept
    assert (label == IGNORE).sum() == (written == IGNORE).sum()
    np.testing.assert_allclose(np.sort(image[1].ravel()), np.linspace(0, 1, written.size), atol=1e-6)
    assert image[0].max() <= (60.0 - 30.0) / 10.0 + 1e-6  # the CT channel clipped and z-scored
    assert set(_class_locations(label, "c0", IGNORE)[:, 0].tolist()) == {1}


def test_a_tiny_run_on_an_ignore_label_set_trains_and_scores_only_the_organs(tmp_path: Path) -> None:
    data = _nnunet_set(tmp_path / "Dataset009_Sparse")
    settings = [*TINY_RUN[: TINY_RUN.index("--whole-volume")], "--set", "iterations=2", "--whole-volume", "none"]
    proc = subprocess.run(
        bench_cmd("-q", "run", "--models", "lcovnet", "--data", str(data), "--results", str(tmp_path / "r"),
                  *settings),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (run,) = (tmp_path / "r" / "runs").iterdir()
    spec = json.loads((run / "preprocessing.json").read_text())
    assert spec["num_classes"] == 3 and spec["labels"] == {"0": "background", "1": "liver", "2": "spleen"}
    assert spec["preprocessing"]["ignore_label"] == IGNORE
    rows = pd.read_csv(run / "per_case.csv")
    assert set(rows["name"]) == {"liver", "spleen"}
