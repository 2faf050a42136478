"""`bench export`: ONNX with dynamic axes and a sidecar, parity with PyTorch, int8 quantization, `predict --onnx`."""

import json
import shutil
import subprocess

import numpy as np
import onnx
import pytest
import SimpleITK as sitk
import torch

from bench.deploy.onnx_export import MainLogits, export_onnx
from bench.deploy.predict import ort_session
from bench.networks import build_model
from tests.bench.runutil import bench_cmd, export_int8, sidecar_of_run

CORE_MODELS = ["lcovnet", "unet3d", "nnunet"]


@pytest.mark.parametrize("name", CORE_MODELS)
def test_onnx_export_of_each_core_model_matches_pytorch_on_a_volume_of_another_size(name, tmp_path):
    torch.manual_seed(0)
    network = build_model(name, 1, 5, deep_supervision=False, base_channels=4).eval()
    export_onnx(network, 1, [32, 64, 64], tmp_path / "m.onnx")
    onnx.checker.check_model(str(tmp_path / "m.onnx"), full_check=True)
    x = torch.randn(2, 1, 48, 64, 96)  # batch and every spatial side differ from the traced input
    with torch.inference_mode():
        ref = MainLogits(network)(x)
    session = ort_session(tmp_path / "m.onnx", threads=1)
    out = torch.from_numpy(session.run(None, {"image": x.numpy()})[0])
    assert out.shape == ref.shape
    assert (out - ref).abs().max() < 1e-3  # the export's own parity limit
    assert (out.argmax(1) == ref.argmax(1)).double().mean() >= 0.999


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    return export_int8(trained_run, tmp_path_factory.mktemp("export"), "onnx")


def test_export_writes_checked_onnx_files_sidecars_and_run_record(exported):
    results, run_id, out, stdout = exported
    assert sorted(p.name for p in out.iterdir()) == ["model.int8.onnx", "model.int8.onnx.json", "model.onnx",
                                                     "model.onnx.json"]  # fmt: skip
    for name in ("model.onnx", "model.int8.onnx"):
        onnx.checker.check_model(str(out / name))
    model = onnx.load(str(out / "model.onnx"))
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "depth", "height", "width"]
    sidecar = sidecar_of_run(results, run_id, out / "model.onnx.json")
    assert sidecar["run_id"] == run_id and sidecar["export"]["variant"] == "fp32"
    record = json.loads((results / "runs" / run_id / "export.json").read_text())
    fp32, int8 = record["variants"]["fp32"], record["variants"]["int8"]
    assert fp32["max_abs_logit_diff"] < 1e-3 and fp32["argmax_agreement"] >= 0.999
    summary = json.loads((results / "runs" / run_id / "summary.json").read_text())
    # Same preprocessed cases and sliding window; the float ONNX logits differ from PyTorch's by < 1e-3.
    assert fp32["dice"] == pytest.approx(summary["dice_mean"], abs=1e-3)
    assert 0 < int8["size_mb"] < fp32["size_mb"]
    assert int8["dice"] is not None and int8["hd95"] is not None
    assert f"{fp32['dice'] - int8['dice']:+.4f}" in stdout and "onnxruntime int8" in stdout


def test_predict_onnx_gives_the_masks_of_the_pytorch_run(exported, tiny_dataset, tmp_path):
    results, run_id, out, _ = exported
    proc = subprocess.run(bench_cmd("predict", "--onnx", str(out / "model.onnx"), "--input",
                                    str(tiny_dataset / "imagesTs"), "--output", str(tmp_path)),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    for path in sorted((results / "runs" / run_id / "predictions").iterdir()):
        got = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / path.name)))
        want = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        assert got.shape == want.shape and np.mean(got == want) >= 0.999


def test_predict_onnx_without_sidecar_is_a_clear_error(exported, tiny_dataset, tmp_path):
    _, _, out, _ = exported
    shutil.copy(out / "model.onnx", tmp_path / "alone.onnx")
    proc = subprocess.run(bench_cmd("predict", "--onnx", str(tmp_path / "alone.onnx"), "--input",
                                    str(tiny_dataset / "imagesTs"), "--output", str(tmp_path / "m")),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2 and "alone.onnx.json: no such file" in proc.stderr
    assert not (tmp_path / "m").exists()


def test_export_of_a_run_whose_cache_is_gone_names_the_case(trained_run, tmp_path):
    results, run_id = trained_run
    copy = tmp_path / "results"
    shutil.copytree(results / "runs" / run_id, copy / "runs" / run_id)
    proc = subprocess.run(
        bench_cmd("export", "--run", run_id, "--results", str(copy)), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2 and "is not in" in proc.stderr and "Traceback" not in proc.stderr
    assert not (copy / "runs" / run_id / "export").exists()
