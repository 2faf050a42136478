"""Whole-CT inference options of `bench predict`: a larger window than the training patch, another overlap, and
constant instead of Gaussian blending."""

import subprocess

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from bench.errors import BenchError
from bench.inference import predict_logits
from bench.networks import build_model
from tests.bench.runutil import bench_cmd


def test_without_overlap_constant_and_gaussian_blending_give_the_same_logits():
    torch.manual_seed(0)
    network = build_model("lcovnet", 1, 3, deep_supervision=False, base_channels=4)
    image = torch.randn(1, 32, 32, 64)  # two windows side by side, no overlap: each voxel sees one window
    gaussian = predict_logits(network, image, (32, 32, 32), overlap=0.0, blend="gaussian")
    constant = predict_logits(network, image, (32, 32, 32), overlap=0.0, blend="constant")
    with torch.inference_mode():
        halves = [network(image[None, ..., i : i + 32]).logits[0][0] for i in (0, 32)]
    assert torch.allclose(constant, torch.cat(halves, dim=-1), atol=1e-5)
    assert torch.allclose(gaussian, constant, atol=1e-5)


def test_an_unknown_blend_is_a_clear_error():
    network = build_model("lcovnet", 1, 3, deep_supervision=False, base_channels=4)
    with pytest.raises(BenchError, match="blend must be one of gaussian, constant, got 'median'"):
        predict_logits(network, torch.zeros(1, 32, 32, 32), (32, 32, 32), blend="median")


def _predict(*args):
    return subprocess.run(bench_cmd("predict", "--device", "cpu", *args), capture_output=True, text=True, timeout=300)


def test_a_larger_window_without_overlap_segments_in_the_input_geometry(trained_run, tiny_dataset, tmp_path):
    results, run_id = trained_run
    options = ["--window", "32,48,48", "--overlap", "0", "--blend", "constant"]
    proc = _predict("--run", run_id, "--results", str(results), "--input", str(tiny_dataset / "imagesTs"),
                    "--output", str(tmp_path), *options)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    for path in sorted((results / "runs" / run_id / "predictions").iterdir()):
        got, want = sitk.ReadImage(str(tmp_path / path.name)), sitk.ReadImage(str(path))
        assert got.GetSize() == want.GetSize() and got.GetSpacing() == pytest.approx(want.GetSpacing())
        # Another window and blending move few boundary voxels of the run's own masks.
        assert np.mean(sitk.GetArrayFromImage(got) == sitk.GetArrayFromImage(want)) >= 0.9


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--window", "30,48,48"], "30x48x48"),
        (["--overlap", "1.5"], "--window/--overlap: overlap must be a number in [0, "),
    ],
)
def test_a_window_or_overlap_the_network_cannot_take_is_one_line_exit_2(extra, message, trained_run, tmp_path):
    results, run_id = trained_run
    proc = _predict("--run", run_id, "--results", str(results), "--input", str(tmp_path), "--output",
                    str(tmp_path / "m"), *extra)  # fmt: skip
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "m").exists()
