"""`bench profile`: MAC counts against an independent counter, the record schema and the CLI."""

import json
import logging
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import models
from bench.profiling.flops import count_macs, count_macs_thop
from bench.profiling.peak import measure_peak
from bench.profiling.profile import RECORD_KEYS, ProfileSettings, profile_model

SMALL = {
    "lcovnet": ({"base_channels": 8}, (32, 32, 32)),
    "unet3d": ({"base_channels": 8}, (32, 32, 32)),
    "nnunet": ({"features_per_stage": [8, 16, 16, 16, 16, 16]}, (32, 64, 64)),
}


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_convolution_macs_match_torch_flop_counter_within_half_a_percent(name):
    kwargs, shape = SMALL[name]
    model = models.create_model(name, 1, 5, deep_supervision=False, **kwargs).eval()
    x = torch.randn(1, 1, *shape)
    ours = count_macs(model, x)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    conv_flops = sum(v for op, v in counter.get_flop_counts()["Global"].items() if "convolution" in str(op))
    # torch's counter reports FLOPs = 2 x MACs and leaves out the bias add that fvcore includes in a conv's count
    assert ours.by_operator["conv"] == pytest.approx(conv_flops / 2, rel=5e-3)
    assert ours.uncounted_ops == {}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_op_of_registered_model_is_counted(name):
    kwargs, shape = SMALL[name]
    model = models.create_model(name, 1, 3, deep_supervision=True, **kwargs)
    assert count_macs(model, torch.randn(1, 1, *shape)).uncounted_ops == {}


def test_lcovnet_counts_gating_pooling_and_trilinear_upsampling():
    model = models.create_model("lcovnet", 1, 3, base_channels=4, deep_supervision=False)
    ops = count_macs(model, torch.randn(1, 1, 32, 32, 32)).by_operator
    for op in ("upsample_trilinear3d", "avg_pool3d", "max_pool3d", "sigmoid", "mul", "add", "hardtanh_"):
        assert ops[op] > 0, op


def test_trilinear_upsampling_costs_eight_macs_per_output_voxel():
    class Up(torch.nn.Module):
        def forward(self, x):
            return models.SegOutput([torch.nn.functional.interpolate(x, scale_factor=2, mode="trilinear")])

    assert count_macs(Up(), torch.randn(1, 2, 4, 4, 4)).macs == 8 * 2 * 8 * 8 * 8


def test_thop_overcounts_transposed_convolution_by_stride_cubed():
    class Up(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.up = torch.nn.ConvTranspose3d(4, 8, 2, stride=2, bias=False)

        def forward(self, x):
            return models.SegOutput([self.up(x)])

    x = torch.randn(1, 4, 16, 32, 32)
    ours = count_macs(Up(), x).macs
    assert ours == 4 * 8 * 8 * 16 * 32 * 32  # every input voxel meets each of the 8 kernel taps once
    assert count_macs_thop(Up(), x) == 8 * ours


def test_thop_count_leaves_logging_as_it_found_it(caplog):
    class Up(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.up = torch.nn.Upsample(scale_factor=2, mode="trilinear")

        def forward(self, x):
            return models.SegOutput([self.up(x)])

    root = logging.getLogger()
    handlers, filters = list(root.handlers), list(root.filters)
    with caplog.at_level(logging.WARNING):
        count_macs_thop(Up(), torch.randn(1, 2, 4, 4, 4))  # thop logs "not implemented" for trilinear: dropped
        logging.getLogger("bench.test").warning("still reported")
    assert [r.getMessage() for r in caplog.records] == ["still reported"]
    assert logging.root.manager.disable == logging.NOTSET
    assert root.handlers == handlers and root.filters == filters


def test_profile_record_has_schema_and_measured_values():
    threads = torch.get_num_threads()
    settings = ProfileSettings(classes=4, patch=(32, 32, 32), warmup=1, runs=3, threads=threads + 1, peak_size=256)
    record = profile_model("lcovnet", settings)
    assert torch.get_num_threads() == threads  # the profile's thread count is not left behind
    assert record["threads"] == threads + 1
    assert tuple(record) == RECORD_KEYS
    assert record["params"] == sum(p.numel() for p in models.create_model("lcovnet", 1, 4).parameters())
    assert record["params"] == record["trainable_params"]
    assert record["gflops"] == pytest.approx(2 * record["gmacs"])
    assert record["uncounted_ops"] == []
    assert 0 < record["latency_ms_median"] <= record["latency_ms_p90"]
    assert record["peak_mem_mb"] >= 0
    assert record["device"] == "cpu" and record["patch"] == [32, 32, 32]
    # The achieved rate is the MACs over the median latency, set against a 256^3 fp32 GEMM timed in the same process.
    achieved = float(record["gmacs"]) / (float(record["latency_ms_median"]) / 1000)
    assert record["gmacs_per_s"] == pytest.approx(achieved, rel=1e-12)
    assert record["peak_share"] == pytest.approx(achieved / record["peak_gmacs_per_s"], rel=1e-12)
    assert record["peak_kernel"] == "torch.mm fp32 256^3"


def test_profile_cli_writes_json_and_csv(tmp_path):
    out_json, out_csv = tmp_path / "p.json", tmp_path / "p.csv"
    proc = _bench("profile", "--models", "lcovnet", "--classes", "3", "--patch", "32,32,32", "--runs", "2",
                  "--warmup", "1", "--device", "cpu", "--json", str(out_json), "--csv", str(out_csv))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "lcovnet" in proc.stdout and "GMACs" in proc.stdout
    records = json.loads(out_json.read_text())
    assert records[0]["model"] == "lcovnet" and records[0]["classes"] == 3
    assert out_csv.read_text().splitlines()[0].startswith("model,params,")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--models", "nosuchnet"], "unknown model 'nosuchnet'"),
        (["--models", "lcovnet", "--patch", "40,64,64"], "multiple of its stride 16x16x16"),
        (["--models", "lcovnet", "--patch", "0,64,64"], "--patch values must be positive"),
        (["--models", "lcovnet", "--batch", "-1"], "--batch must be positive"),
        (["--models", "lcovnet", "--device", "cuda"], "no CUDA GPU is available"),
    ],
)
def test_profile_bad_input_is_one_line_with_exit_code_2(args, message):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    proc = _bench("profile", *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_debug_flag_shows_traceback():
    proc = _bench("--debug", "profile", "--models", "nosuchnet")
    assert proc.returncode == 2 and "Traceback" in proc.stderr


@pytest.mark.parametrize(
    ("volume", "patch", "overlap"), [((48, 64, 64), (32, 32, 32), 0.5), ((20, 40, 70), (32, 32, 32), 0.25)]
)
def test_whole_volume_window_count_is_what_monai_runs(volume, patch, overlap):
    from monai.inferers import sliding_window_inference

    from bench.profiling.whole_volume import window_count

    calls = []

    def predictor(x):
        calls.append(x.shape[0])
        return x

    sliding_window_inference(torch.zeros(1, 1, *volume), patch, 1, predictor, overlap=overlap)
    assert window_count(volume, patch, overlap) == len(calls)


def test_profile_whole_volume_times_sliding_window_over_the_volume(tmp_path):
    proc = _bench("profile", "--models", "lcovnet", "--classes", "3", "--patch", "32,32,32", "--whole-volume",
                  "32,48,48", "--runs", "1", "--warmup", "0", "--no-thop", "--device", "cpu", "--json",
                  str(tmp_path / "p.json"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    (record,) = json.loads((tmp_path / "p.json").read_text())
    assert record["whole_volume"] == [32, 48, 48] and record["whole_ct_windows"] == 4
    assert record["whole_ct_seconds"] > 0 and "whole CT 32x48x48 (s)" in proc.stdout


@pytest.mark.parametrize(
    ("precision", "kernel"), [("fp32", "torch.mm"), ("bf16", "torch.mm"), ("int8", "torch._int_mm")]
)
def test_peak_gemm_runs_in_each_precision_and_counts_size_cubed_macs(precision, kernel):
    peak = measure_peak(precision, size=128, runs=2)
    assert (peak.precision, peak.kernel, peak.size) == (precision, kernel, 128)
    assert peak.gmacs_per_s > 0
    achieved, share = peak.share(gmacs=2.0, seconds=0.5)
    assert achieved == 4.0 and share == pytest.approx(4.0 / peak.gmacs_per_s)
