"""`bench predict` end to end: a trained run segments new CTs exactly as `bench run` evaluated them."""

import json
import subprocess

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from bench.metrics import evaluate_case, summarize
from bench.store import ResultsStore
from tests.bench.runutil import bench_cmd


def _predict(*args, timeout=300):
    return subprocess.run(
        bench_cmd("predict", "--device", "cpu", *args), capture_output=True, text=True, timeout=timeout
    )


def _scored_labels(run_dir) -> dict[int, str]:
    """The labels the run scored: the preset's organs of the data set (the smoke preset keeps five), not all of them."""
    raw = json.loads((run_dir / "preprocessing.json").read_text())["labels"]
    return {int(value): name for value, name in raw.items()}


def test_predict_run_on_test_images_reproduces_stored_dice_and_input_geometry(tiny_dataset, trained_run, tmp_path):
    results, run_id = trained_run
    out = tmp_path / "masks"
    proc = _predict("--run", run_id, "--results", str(results), "--input", str(tiny_dataset / "imagesTs"),
                    "--output", str(out), "--timings", str(tmp_path / "t.csv"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    masks = sorted(p.name for p in out.iterdir())
    assert masks == sorted(p.name for p in (tiny_dataset / "labelsTs").iterdir())
    rows = []
    for name in masks:
        pred, gt = sitk.ReadImage(str(out / name)), sitk.ReadImage(str(tiny_dataset / "labelsTs" / name))
        assert pred.GetSize() == gt.GetSize()
        assert pred.GetSpacing() == pytest.approx(gt.GetSpacing())
        assert pred.GetOrigin() == pytest.approx(gt.GetOrigin())
        assert pred.GetDirection() == pytest.approx(gt.GetDirection())
        saved = sitk.ReadImage(str(results / "runs" / run_id / "predictions" / name))
        assert np.array_equal(sitk.GetArrayFromImage(pred), sitk.GetArrayFromImage(saved))
        spacing = tuple(reversed(gt.GetSpacing()))
        rows += evaluate_case(
            name.split(".")[0],
            sitk.GetArrayFromImage(pred),
            sitk.GetArrayFromImage(gt),
            spacing,
            _scored_labels(results / "runs" / run_id),
        )
    stored = ResultsStore(results).summaries()[0]
    assert len(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(out / masks[0]))))) > 1  # organs, not background
    # Same computation on the same float32 inputs: the tolerance only absorbs the JSON round trip of the summary.
    assert summarize(pd.DataFrame(rows))["dice_mean"] == pytest.approx(stored.dice_mean, abs=1e-6)
    timings = pd.read_csv(tmp_path / "t.csv")
    steps = ["read", "locate", "preprocess", "infer", "restore", "write"]
    assert list(timings["case"]) == [m.split(".")[0] for m in masks]
    assert np.allclose(timings[steps].sum(axis=1), timings["total"]) and (timings[steps] >= 0).all().all()
    assert "infer (s)" in proc.stdout


def test_weights_with_preprocessing_file_segments_one_file_like_the_run(tiny_dataset, trained_run, tmp_path):
    results, run_id = trained_run
    run_dir = results / "runs" / run_id
    image = tiny_dataset / "imagesTs" / "case_0005_0000.nii.gz"
    proc = _predict("--weights", str(run_dir / "weights.pt"), "--model", "lcovnet", "--preprocessing",
                    str(run_dir / "preprocessing.json"), "--input", str(image), "--output", str(tmp_path))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "case_0005.nii.gz")))
    saved = sitk.GetArrayFromImage(sitk.ReadImage(str(run_dir / "predictions" / "case_0005.nii.gz")))
    assert np.array_equal(got, saved)


def test_dataset_layout_input_segments_every_case(tiny_dataset, trained_run, tmp_path):
    results, run_id = trained_run
    proc = _predict(
        "--run", run_id, "--results", str(results), "--input", str(tiny_dataset), "--output", str(tmp_path / "m")
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [f"case_{i:04d}.nii.gz" for i in range(7)]


def _bad_inputs(tmp_path, tiny_dataset, run_dir):
    """name -> (extra arguments, expected message)."""
    image = sitk.ReadImage(str(tiny_dataset / "imagesTs" / "case_0005_0000.nii.gz"))
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes_0000.nii.gz").write_text("not an image")
    (tmp_path / "vector").mkdir()
    sitk.WriteImage(sitk.Compose(image, image), str(tmp_path / "vector" / "ct.nii.gz"))
    (tmp_path / "twochan").mkdir()
    for c in (0, 1):
        sitk.WriteImage(image, str(tmp_path / "twochan" / f"ct_{c:04d}.nii.gz"))
    (tmp_path / "slice").mkdir()
    sitk.WriteImage(image[:, :, 0], str(tmp_path / "slice" / "ct.nii.gz"))
    return {
        "unreadable": (["--run", run_dir.name, "--input", str(tmp_path / "text")], "not a readable image"),
        "vector": (["--run", run_dir.name, "--input", str(tmp_path / "vector")], "2 components per voxel"),
        "channels": (["--run", run_dir.name, "--input", str(tmp_path / "twochan")], "2 channel file(s)"),
        "2d": (["--run", run_dir.name, "--input", str(tmp_path / "slice")], "2-D image, expected 3-D"),
        "no run": (["--run", "nosuchrun", "--input", str(tmp_path / "slice")], "no such run"),
        "no spec": (["--weights", str(run_dir / "weights.pt"), "--input", str(tmp_path / "slice")],
                    "--weights needs --preprocessing"),
        "wrong model": (["--weights", str(run_dir / "weights.pt"), "--model", "unet3d", "--preprocessing",
                         str(run_dir / "preprocessing.json"), "--input", str(tmp_path / "slice")],
                        "does not fit unet3d"),
    }  # fmt: skip


@pytest.mark.parametrize("case", ["unreadable", "vector", "channels", "2d", "no run", "no spec", "wrong model"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tiny_dataset, trained_run, tmp_path, case):
    results, run_id = trained_run
    extra, message = _bad_inputs(tmp_path, tiny_dataset, results / "runs" / run_id)[case]
    proc = _predict(*extra, "--results", str(results), "--output", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_run_without_weights_is_a_clear_error(tmp_path):
    results = tmp_path / "results"
    (results / "runs" / "broken").mkdir(parents=True)
    proc = _predict(
        "--run", "broken", "--results", str(results), "--input", str(tmp_path), "--output", str(tmp_path / "out")
    )
    assert proc.returncode == 2 and "has no weights.pt" in proc.stderr and "Traceback" not in proc.stderr
