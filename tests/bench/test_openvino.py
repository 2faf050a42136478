"""OpenVINO as a runtime: IR conversion, fp32 parity, bf16 where the CPU has it, NNCF int8, `bench export --format
openvino` and `bench predict --runtime openvino`."""

import json
import subprocess

import numpy as np
import openvino as ov
import pytest
import SimpleITK as sitk
import torch

from bench.deploy.onnx_export import MainLogits, export_onnx
from bench.deploy.openvino_runtime import (
    OpenVinoNetwork,
    compile_model,
    cpu_has_bf16,
    gemm_model,
    machine_peak,
    onnx_to_ir,
    resolve_precision,
    torch_to_openvino,
)
from bench.deploy.predict import load_torch_model
from bench.deploy.spec import run_spec
from bench.networks import build_model
from bench.profiling.peak import measure_peak
from tests.bench.runutil import bench_cmd, export_int8, sidecar_of_run

NO_BF16 = "this CPU has no native bf16 (AVX-512 BF16 or AMX) for OpenVINO"


def _logits(network: OpenVinoNetwork, x: torch.Tensor) -> torch.Tensor:
    return network(x).logits[0]


@pytest.mark.parametrize("name", ["lcovnet", "nnunet"])  # unet3d has no layer type that nnunet lacks
def test_openvino_ir_of_each_core_model_matches_pytorch_in_fp32_on_a_volume_of_another_size(name, tmp_path):
    torch.manual_seed(0)
    network = build_model(name, 1, 5, deep_supervision=False, base_channels=4).eval()
    export_onnx(network, 1, [32, 64, 64], tmp_path / "m.onnx")
    onnx_to_ir(tmp_path / "m.onnx", tmp_path / "m.xml")
    ops = ov.Core().read_model(str(tmp_path / "m.xml")).get_ops()
    weights = [op for op in ops if op.get_type_name() == "Constant" and len(op.get_output_shape(0)) == 5]
    # Kept in fp32, not compressed to fp16 (OpenVINO's default when saving).
    assert weights and {str(w.get_element_type()) for w in weights} == {"<Type: 'float32'>"}
    precision = resolve_precision("fp32")
    compiled = compile_model(tmp_path / "m.xml", precision, threads=1)
    assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    x = torch.randn(1, 1, 48, 64, 96)  # every spatial side differs from the traced input
    with torch.inference_mode():
        ref = MainLogits(network)(x)
    out = _logits(OpenVinoNetwork(compiled, precision), x)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() < 1e-3  # the export's own parity limit
    assert (out.argmax(1) == ref.argmax(1)).double().mean() >= 0.999


@pytest.mark.skipif(not cpu_has_bf16(), reason=NO_BF16)
def test_bf16_compiles_in_bf16_where_the_cpu_has_it_and_stays_close_to_fp32():
    torch.manual_seed(0)
    network = build_model("lcovnet", 1, 5, deep_supervision=False, base_channels=4).eval()
    bf16 = torch_to_openvino(network, 1, [32, 32, 32], "bf16")
    assert bf16.precision.used == "bf16" and bf16.precision.note == ""
    assert str(bf16.compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'bfloat16'>"
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.inference_mode():
        ref = MainLogits(network)(x)
    diff = (_logits(bf16, x) - ref).abs().max()
    # bf16 keeps 8 significant bits: its logits are near, not equal to, fp32's.
    assert 0 < diff < 0.05 * ref.abs().max()


def test_bf16_on_a_cpu_without_it_runs_fp32_and_says_why():
    precision = resolve_precision("bf16")
    if cpu_has_bf16():
        assert (precision.used, precision.note) == ("bf16", "")
    else:
        assert precision.used == "fp32" and "no native bf16" in precision.note


def _matmul_precision(compiled) -> str:
    """The precision OpenVINO's CPU plugin runs the model's one MatMul in (its runtime graph's FullyConnected)."""
    ops = compiled.get_runtime_model().get_ops()
    [fc] = [op for op in ops if op.get_rt_info()["layerType"].astype(str) == "FullyConnected"]
    return fc.get_rt_info()["runtimePrecision"].astype(str)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_openvino_gemm_reference_runs_in_the_precision_it_measures(precision):
    model, compiled_as = gemm_model(precision, 64)
    ran = _matmul_precision(compile_model(model, compiled_as, threads=1))
    if precision == "int8":  # FakeQuantize on the input: unsigned 8-bit activations against int8 weights
        assert ran in ("u8", "i8")
    else:
        assert ran == {"fp32": "f32", "bf16": "bf16"}[compiled_as.used]


def test_machine_peak_is_the_faster_of_torch_and_openvino_gemms():
    peak = machine_peak("fp32", size=256)
    torch_rate = measure_peak("fp32", size=256).gmacs_per_s
    assert peak.precision == "fp32" and peak.size == 256
    assert peak.kernel in ("torch.mm", "OpenVINO MatMul (fp32)")
    # Rates from two separate timings of small GEMMs: the chosen one is at least the torch figure up to timing noise.
    assert peak.gmacs_per_s > 0.5 * torch_rate


@pytest.fixture(scope="module")
def exported_ir(trained_run, tmp_path_factory):
    return export_int8(trained_run, tmp_path_factory.mktemp("export-openvino"), "openvino")


def test_openvino_export_writes_ir_sidecars_and_its_own_run_record(exported_ir):
    results, run_id, out, stdout = exported_ir
    ir = {f"model{v}.{ext}" for v in ("", ".int8") for ext in ("xml", "bin", "xml.json")}
    assert {p.name for p in out.iterdir()} == ir
    sidecar = sidecar_of_run(results, run_id, out / "model.xml.json")
    assert sidecar["export"]["variant"] == "fp32" and sidecar["export"]["runtime"] == "openvino"
    record = json.loads((results / "runs" / run_id / "export.openvino.json").read_text())
    assert record["format"] == "openvino" and "openvino" in record
    fp32, bf16, int8 = (record["variants"][k] for k in ("fp32", "bf16", "int8"))
    assert fp32["max_abs_logit_diff"] < 1e-3 and fp32["argmax_agreement"] >= 0.999
    summary = json.loads((results / "runs" / run_id / "summary.json").read_text())
    assert abs(fp32["dice"] - summary["dice_mean"]) <= 1e-4  # issue 29: no Dice lost by the export
    assert bf16["precision"] == ("bf16" if cpu_has_bf16() else "fp32") and bf16["file"] == "model.xml"
    assert int8["precision"] == "int8" and int8["dice"] is not None and int8["hd95"] is not None
    assert "openvino int8" in stdout and f"{fp32['dice'] - int8['dice']:+.4f}" in stdout
    assert "Statistics collection" not in stdout  # NNCF's own progress bars stay out of the result


def _predict(*args):
    return subprocess.run(bench_cmd("predict", *args), capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("source", ["ir", "onnx-compiled-by-openvino", "run"])
def test_predict_with_openvino_gives_the_masks_of_the_pytorch_run(source, exported_ir, tiny_dataset, tmp_path):
    results, run_id, out, _ = exported_ir
    if source == "ir":
        args = ["--openvino", str(out / "model.xml")]
    elif source == "run":
        args = ["--run", run_id, "--results", str(results), "--runtime", "openvino"]
    else:
        onnx = tmp_path / "model.onnx"
        spec, weights = run_spec(results, run_id)
        export_onnx(load_torch_model(spec, weights, deep_supervision=False)[0], 1, spec.patch, onnx)
        (tmp_path / "model.onnx.json").write_text((out / "model.xml.json").read_text())
        args = ["--onnx", str(onnx), "--runtime", "openvino"]
    proc = _predict(*args, "--input", str(tiny_dataset / "imagesTs"), "--output", str(tmp_path / "m"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "runtime openvino, precision fp32" in proc.stdout
    for path in sorted((results / "runs" / run_id / "predictions").iterdir()):
        got = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "m" / path.name)))
        want = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        assert got.shape == want.shape and np.mean(got == want) >= 0.999


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--runtime", "onnxruntime"], "--runtime onnxruntime runs --onnx files only"),
        (["--runtime", "pytorch"], "--runtime pytorch cannot run --openvino files"),
        (["--precision", "bf16", "--runtime", "onnxruntime"], "--precision bf16 needs --runtime openvino"),
    ],
)
def test_a_runtime_that_cannot_run_the_source_is_one_line_exit_2(extra, message, exported_ir, tiny_dataset, tmp_path):
    _, _, out, _ = exported_ir
    proc = _predict("--openvino", str(out / "model.xml"), *extra, "--input", str(tiny_dataset / "imagesTs"),
                    "--output", str(tmp_path / "m"))  # fmt: skip
    assert proc.returncode == 2 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "m").exists()
