"""Whole-CT seconds of lcovnet, unet3d and nnunet per runtime: PyTorch eager (fp32 and bf16 autocast),
torch.compile, onnxruntime fp32 and int8, OpenVINO fp32, bf16 and int8 (NNCF); on the CPU or a GPU (OpenVINO: CPU).

Each network (the registered full width unless --base-channels, untrained weights: the time does not depend on them)
segments a phantom CT of --volume voxels by Gaussian-blended sliding windows at the window size and overlap of
--preset (default: the `default` preset, 64x128x128 windows at overlap 0.5), through blending and argmax, as
`bench predict` does in its infer step. Every whole-CT figure is the median of --runs runs after a warm-up window;
on a GPU each run is timed with CUDA events after a synchronize. "patch ms" is the median of --patch-runs forward
passes of one window after --patch-warmup (CUDA events on a GPU). The ONNX files are exported and quantized here
(int8 calibrated on patches of the phantom CT, normalised to [0, 1] over the -175..250 HU window); onnxruntime runs
on the CUDA provider where the installed onnxruntime has it, else on the CPU, with as many threads as torch.
The OpenVINO IR is converted from the same ONNX file and its int8 model quantized by NNCF on the same patches; its
bf16 runs in fp32 where the CPU lacks native bf16 (the precision column and a note say so).
Ratios are against nnunet eager in the same run; argmax agreement is the share of voxels whose label equals eager
fp32's on the phantom CT. "GMAC/s" is one window's MACs (fvcore) over its median time and "% of peak" its share of a
dense square GEMM timed in the same process, threads and precision (torch.mm, torch._int_mm for int8; on the CPU
with OpenVINO runtimes in the table, the faster of that and OpenVINO's MatMul, int8 as NNCF quantizes): far below it a
network is bound by memory traffic and element-wise work, near it by its MACs. A share above 100 % says the GEMM is
not that precision's ceiling (AMX int8 3-D convolutions with many channels outrun a 2048-square GEMM).

The end-to-end rows segment a full-resolution phantom CT (--e2e, default 200x512x512 at 2.5x0.8x0.8 mm) with
`bench predict` in a fresh process per runtime (untrained --e2e-model weights, resampled to the paper preset's
3.0x1.4x1.4 mm, the preset's window and overlap): PyTorch; OpenVINO fp32 and bf16 from the weights file (converted
through ONNX inside the timed process) and from an IR exported beforehand (ir-fp32, ir-bf16: what a deployment
runs). Per row the seconds of each stage (read, locate (0: the whole CT is segmented), preprocess, infer, restore,
write), of the whole process (from start to written mask), and its own peak resident memory. --quick runs
everything at a tiny size to prove the script works.

--kernels N prints, per network, the N operators with the most self time (CUDA time on a GPU) of one window in fp32
and in bf16, from torch.profiler: where a window's time goes.

Examples:
  OMP_NUM_THREADS=2 python benchmarks/bench_deploy.py --volume 160,256,256
  python benchmarks/bench_deploy.py --quick
  python benchmarks/bench_deploy.py --device cuda --runtimes eager,bf16,compile,ort-fp32 --runs 30 --kernels 10
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tabulate import tabulate
from torch import nn

from bench.deploy.onnx_export import export_onnx
from bench.deploy.openvino_runtime import (
    OpenVinoNetwork,
    compile_model,
    ir_files,
    machine_peak,
    onnx_to_ir,
    quantize_int8_ir,
    resolve_precision,
)
from bench.deploy.predict import OnnxNetwork, ort_providers, ort_session
from bench.deploy.quantize import quantize_int8
from bench.device import resolve_device
from bench.inference import predict_labels
from bench.networks import build_model
from bench.profiling.child import run_child
from bench.profiling.flops import count_macs
from bench.profiling.peak import measure_peak
from bench.profiling.timing import time_forward
from bench.profiling.whole_volume import whole_volume_seconds, window_count
from bench.training.config import load_config

CLASSES = 17
RUNTIMES = ("eager", "bf16", "compile", "ort-fp32", "ort-int8", "ov-fp32", "ov-bf16", "ov-int8")
DEFAULT_RUNTIMES = {"cpu": "eager,ort-fp32,ort-int8,ov-fp32,ov-bf16,ov-int8", "cuda": "eager,bf16,compile,ort-fp32"}
QUICK = {"models": "lcovnet", "volume": "32,64,64", "preset": "smoke", "base_channels": 4, "calibration_patches": 2,
         "patch_runs": 2, "e2e": "40,96,96", "peak_size": 512}  # fmt: skip
E2E_RUNTIMES = ("pytorch", "openvino-fp32", "openvino-bf16", "ir-fp32", "ir-bf16")
E2E_SPACING = (2.5, 0.8, 0.8)  # z, y, x in mm: an abdominal CT as clinics store it
E2E_TARGET_SPACING = (3.0, 1.4, 1.4)  # the paper preset's spacing (bench/presets/paper.toml)
# The precision each runtime's MACs run in: its latency is set against a GEMM timed in the same precision.
PRECISION = {"eager": "fp32", "bf16": "bf16", "compile": "fp32", "ort-fp32": "fp32", "ort-int8": "int8",
             "ov-fp32": "fp32", "ov-bf16": "bf16", "ov-int8": "int8"}  # fmt: skip


def synthetic_ct(volume: tuple[int, int, int]) -> np.ndarray:
    """A phantom CT of the built-in data set at ``volume``, windowed to [0, 1] (-175..250 HU)."""
    from bench.data.synth import synth_case

    image, _ = synth_case(0, 0, volume)
    return ((np.clip(image, -175, 250) + 175) / 425).astype(np.float32)[None]


def calibration(ct: np.ndarray, patch: list[int], count: int):
    rng = np.random.default_rng(0)
    for _ in range(count):
        start = [int(rng.integers(0, max(1, s - p) + 1)) for s, p in zip(ct.shape[1:], patch)]
        crop = ct[:, start[0] : start[0] + patch[0], start[1] : start[1] + patch[1], start[2] : start[2] + patch[2]]
        pad = [(0, 0)] + [(0, p - s) for s, p in zip(crop.shape[1:], patch)]
        yield np.pad(crop, pad)[None]


class Runtime:
    """One way of running a network: the module sliding windows call, where its windows run, under which autocast."""

    def __init__(self, network: nn.Module, device: torch.device, amp: torch.dtype | None = None,
                 file: Path | None = None) -> None:  # fmt: skip
        self.network, self.device, self.amp, self.file = network, device, amp, file

    def labels(self, image: torch.Tensor, patch: list[int], overlap: float) -> np.ndarray:
        return predict_labels(self.network, image, patch, overlap=overlap, device=self.device, amp_dtype=self.amp)

    def forward(self, window: torch.Tensor) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode(), torch.autocast(self.device.type, self.amp, enabled=self.amp is not None):
                return self.network(window)

        return run


def make_runtimes(name: str, network: nn.Module, kinds: list[str], device: torch.device, patch: list[int],
                  ct: np.ndarray, tmp: Path, calibration_patches: int) -> dict[str, Runtime]:  # fmt: skip
    """The requested runtimes of ``network``, exporting (and quantizing) it to ONNX and OpenVINO IR first if one is
    asked for."""
    onnx, xml = tmp / f"{name}.onnx", tmp / f"{name}.xml"
    if any(kind.startswith(("ort", "ov")) for kind in kinds):
        export_onnx(network.cpu(), 1, patch, onnx)
        network.to(device)
    if "ort-int8" in kinds:
        quantize_int8(onnx, tmp / f"{name}.int8.onnx", calibration(ct, patch, calibration_patches))
    if any(kind.startswith("ov") for kind in kinds):
        onnx_to_ir(onnx, xml)
    if "ov-int8" in kinds:
        patches = calibration(ct, patch, calibration_patches)
        quantize_int8_ir(xml, tmp / f"{name}.int8.xml", patches, calibration_patches)
    made = {}
    for kind in kinds:
        if kind == "eager":
            made[kind] = Runtime(network, device)
        elif kind == "bf16":
            made[kind] = Runtime(network, device, torch.bfloat16)
        elif kind == "compile":
            made[kind] = Runtime(torch.compile(network), device)
        elif kind.startswith("ov"):
            file = xml if kind != "ov-int8" else tmp / f"{name}.int8.xml"
            precision = resolve_precision("bf16" if kind == "ov-bf16" else "fp32")
            made[kind] = Runtime(OpenVinoNetwork(compile_model(file, precision), precision), torch.device("cpu"),
                                 file=file)  # fmt: skip
        else:
            file = onnx if kind == "ort-fp32" else tmp / f"{name}.int8.onnx"
            # onnxruntime moves the windows to its own provider; the stitching stays on the CPU.
            made[kind] = Runtime(OnnxNetwork(ort_session(file, device)), torch.device("cpu"), file=file)
    return made


def used_precision(kind: str, runtime: Runtime) -> str:
    """The precision a runtime's MACs ran in: OpenVINO's bf16 falls back to fp32 on a CPU without native bf16."""
    if isinstance(runtime.network, OpenVinoNetwork) and kind != "ov-int8":
        return runtime.network.precision.used
    return PRECISION[kind]


def fallback_notes(kinds: list[str]) -> dict[str, str]:
    """Why a runtime ran in another precision than its name says (OpenVINO bf16 without native bf16)."""
    note = resolve_precision("bf16").note if "ov-bf16" in kinds else ""
    return {"ov-bf16": note} if note else {}


def kernel_table(network: nn.Module, window: torch.Tensor, device: torch.device, amp: torch.dtype | None,
                 top: int) -> str:  # fmt: skip
    """torch.profiler's ``top`` operators by self time (CUDA time on a GPU) of one forward pass after a warm-up."""
    from torch.profiler import ProfilerActivity, profile

    run = Runtime(network, device, amp).forward(window)
    run()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=top)


def end_to_end(args: argparse.Namespace, patch: list[int], overlap: float, width: dict) -> str:
    """A phantom CT of --e2e voxels at 2.5 x 0.8 x 0.8 mm (as clinics store abdominal CT) segmented by `bench predict`
    in a fresh process per --e2e-runtimes entry, resampled to the paper preset's 3.0 x 1.4 x 1.4 mm: each stage's
    seconds (from --timings), the whole process's (imports, loading, compiling included) and its peak resident
    memory (its own ru_maxrss: bench.profiling.child)."""
    import json
    import sys
    from dataclasses import asdict

    import pandas as pd
    import SimpleITK as sitk

    from bench.data.preprocess import PreprocessSettings
    from bench.data.synth import synth_case
    from bench.deploy.predict import STEPS
    from bench.deploy.spec import DeploySpec

    size = tuple(int(v) for v in args.e2e.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        image = sitk.GetImageFromArray(synth_case(0, 0, size)[0])
        image.SetSpacing(tuple(reversed(E2E_SPACING)))
        sitk.WriteImage(image, str(tmp / "ct.nii.gz"))
        network = build_model(args.e2e_model, 1, CLASSES, **width).eval()
        torch.save(network.state_dict(), tmp / "weights.pt")
        settings = PreprocessSettings(target_spacing=E2E_TARGET_SPACING, normalization="window", window=(-175.0, 250.0))
        spec = DeploySpec(args.e2e_model, 1, CLASSES, {i: f"organ_{i}" for i in range(1, CLASSES)}, asdict(settings),
                          list(patch), overlap, model_kwargs=width)  # fmt: skip
        (tmp / "spec.json").write_text(json.dumps(spec.to_json()))
        rows = []
        runtimes = args.e2e_runtimes.split(",")
        if any(runtime.startswith("ir-") for runtime in runtimes):  # exported once, as `bench export` would
            export_onnx(network, 1, list(patch), tmp / "model.onnx")
            onnx_to_ir(tmp / "model.onnx", tmp / "model.xml")
        for runtime in runtimes:
            source = ["--openvino", str(tmp / "model.xml")] if runtime.startswith("ir-") else [
                "--weights", str(tmp / "weights.pt")]  # fmt: skip
            extra = [] if runtime == "pytorch" else ["--runtime", "openvino", "--precision", runtime.split("-")[1]]
            command = [sys.executable, "-m", "bench", "-q", "predict", "--device", "cpu", *source, "--preprocessing",
                       str(tmp / "spec.json"), "--input", str(tmp / "ct.nii.gz"), "--output", str(tmp / runtime),
                       "--timings", str(tmp / f"{runtime}.csv"), *extra]  # fmt: skip
            out, err = tmp / f"{runtime}.out", tmp / f"{runtime}.err"
            child = run_child(command, out, err)
            if child.returncode:
                raise SystemExit(f"bench predict ({runtime}) failed: {err.read_text().strip()[-2000:]}")
            used = out.read_text().strip().splitlines()[-1].split("; runtime ")[-1].replace(", precision", "")
            steps = pd.read_csv(tmp / f"{runtime}.csv").iloc[0]
            rows.append([runtime, used, *(f"{steps[s]:.2f}" for s in STEPS), f"{steps['total']:.2f}",
                         f"{child.wall_s:.2f}", f"{child.peak_rss_mb:.0f}"])  # fmt: skip
    title = (f"end to end through `bench predict`: {args.e2e_model}, CT {'x'.join(map(str, size))} at "
             f"{'x'.join(map(str, E2E_SPACING))} mm (z,y,x), resampled to {'x'.join(map(str, E2E_TARGET_SPACING))} mm, "
             f"window {'x'.join(map(str, patch))}, overlap {overlap}")  # fmt: skip
    headers = ["e2e", "runtime used", *(f"{s} (s)" for s in STEPS), "total (s)", "process (s)", "peak RSS (MB)"]
    return title + "\n" + tabulate(rows, headers=headers, disable_numparse=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="lcovnet,unet3d,nnunet")
    parser.add_argument("--volume", default="160,256,256", help="D,H,W of the CT (default 160,256,256)")
    parser.add_argument("--preset", default="default", help="preset giving window and overlap (default: default)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    parser.add_argument("--runtimes", help=f"comma-separated from {', '.join(RUNTIMES)} (default: "
                        f"{DEFAULT_RUNTIMES['cpu']} on the CPU, {DEFAULT_RUNTIMES['cuda']} on a GPU)")  # fmt: skip
    parser.add_argument("--runs", type=int, help="timed whole-CT runs per figure (default 1 on the CPU, 30 on a GPU)")
    parser.add_argument("--patch-runs", type=int, help="timed one-window runs (default 3 on the CPU, 30 on a GPU)")
    parser.add_argument("--patch-warmup", type=int, default=2, help="untimed one-window runs first (default 2)")
    parser.add_argument("--kernels", type=int, default=0, help="print each network's top N operators (default 0)")
    parser.add_argument("--base-channels", type=int, help="network width (default: each network's registered one)")
    parser.add_argument("--calibration-patches", type=int, default=8)
    parser.add_argument("--e2e", default="200,512,512", metavar="D,H,W",
                        help="full-resolution CT of the end-to-end rows ('': none; default 200,512,512)")  # fmt: skip
    parser.add_argument("--peak-size", type=int, help="side of the square peak GEMM (default 2048 CPU, 8192 GPU)")
    parser.add_argument("--e2e-model", default="lcovnet", help="network of the end-to-end rows (default lcovnet)")
    parser.add_argument("--e2e-runtimes", default=",".join(E2E_RUNTIMES),
                        help=f"end-to-end runs of {', '.join(E2E_RUNTIMES)} (default: all): openvino-* convert the "
                        "weights through ONNX in the timed process, ir-* run an IR exported beforehand, as a "
                        "deployment does")  # fmt: skip
    parser.add_argument("--quick", action="store_true",
                        help="a tiny size that proves the script works (lcovnet at width 4, a 32x64x64 volume, the "
                        "smoke preset, a 40x96x96 end-to-end CT, a 512 GEMM); explicit options still win")  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    unknown = sorted(set(args.runtimes.split(",")) - set(RUNTIMES)) if args.runtimes else []
    if unknown:
        parser.error(f"--runtimes: unknown {', '.join(unknown)}; choose from {', '.join(RUNTIMES)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    kinds = (args.runtimes or DEFAULT_RUNTIMES[device.type]).split(",")
    ov_kinds = any(kind.startswith("ov-") for kind in kinds)
    runs = args.runs or (30 if gpu else 1)
    patch_runs = args.patch_runs or (30 if gpu else 3)
    volume = tuple(int(v) for v in args.volume.split(","))
    config = load_config(args.preset)
    patch, overlap = list(config.eval_patch()), config.overlap
    ct = synthetic_ct(volume)
    image = torch.from_numpy(ct)
    width = {"base_channels": args.base_channels} if args.base_channels else {}
    print(
        f"volume {'x'.join(map(str, volume))}, window {'x'.join(map(str, patch))}, overlap {overlap} "
        f"({window_count(volume, patch, overlap)} windows), {CLASSES} classes, device {device}"
        f"{' (' + torch.cuda.get_device_name(device) + ')' if gpu else ''}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, whole CT: median of {runs}, patch: median of {patch_runs}"
    )
    unknown_e2e = set(args.e2e_runtimes.split(",")) - set(E2E_RUNTIMES)
    if args.e2e and unknown_e2e:
        raise SystemExit(f"--e2e-runtimes: unknown {', '.join(sorted(unknown_e2e))}")
    if any(kind.startswith("ort") for kind in kinds):
        print(f"onnxruntime providers: {', '.join(ort_providers(device))}")
    rows, seconds, peaks = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            network = build_model(name, 1, CLASSES, deep_supervision=False, **width).eval().to(device)
            window = torch.zeros(1, 1, *patch, device=device)
            gmacs = count_macs(network.cpu(), window.cpu()).macs / 1e9
            network.to(device)
            t = time.perf_counter()
            runtimes = make_runtimes(name, network, kinds, device, patch, ct, Path(tmp), args.calibration_patches)
            print(f"{name}: export / quantization {time.perf_counter() - t:.1f} s", flush=True)
            with torch.inference_mode():
                reference = predict_labels(network, image, patch, overlap=overlap, device=device)
            for kind, runtime in runtimes.items():
                run_window = runtime.forward(window.to(runtime.device))
                timing = time_forward(run_window, runtime.device, args.patch_warmup, patch_runs)
                patch_ms = timing.median_ms
                s = whole_volume_seconds(runtime.network, volume, patch, 1, overlap, device=runtime.device,
                                         amp_dtype=runtime.amp, runs=runs)["whole_ct_seconds"]  # fmt: skip
                seconds[(name, kind)] = s
                agree = "-"
                if kind != "eager":
                    with torch.inference_mode():
                        agree = f"{100 * np.mean(runtime.labels(image, patch, overlap) == reference):.3f}"
                files = ir_files(runtime.file) if runtime.file and runtime.file.suffix == ".xml" else [runtime.file]
                size = f"{sum(f.stat().st_size for f in files) / 2**20:.1f}" if runtime.file else "-"
                precision = used_precision(kind, runtime)
                if precision not in peaks:
                    peaks[precision] = (machine_peak(precision, args.peak_size) if ov_kinds and not gpu
                                        else measure_peak(precision, runtime.device, args.peak_size))  # fmt: skip
                rate, share = peaks[precision].share(gmacs, patch_ms / 1000)
                rows.append([name, kind, precision, size, f"{patch_ms:.1f}", f"{rate:.4g}", f"{100 * share:.1f}",
                             f"{s:.2f}", agree])  # fmt: skip
                print(f"  {name} {kind} ({precision}): patch {patch_ms:.1f} ms, {rate:.4g} GMAC/s "
                      f"({100 * share:.1f} % of peak), whole CT {s:.2f} s, argmax agreement {agree} %",
                      flush=True)  # fmt: skip
            for amp in (None, torch.bfloat16) if args.kernels else ():
                print(f"{name}, one window, {'bf16' if amp else 'fp32'}: top {args.kernels} operators")
                print(kernel_table(network, window, device, amp, args.kernels), flush=True)
            del runtimes, network
            if gpu:
                torch.cuda.empty_cache()
    base = seconds.get(("nnunet", "eager"))
    for row in rows:
        row.append(f"{base / seconds[(row[0], row[1])]:.2f}" if base else "-")
    print(tabulate(rows, headers=["model", "runtime", "precision", "file MB", "patch ms", "GMAC/s", "% of peak",
                                  "whole CT (s)", "argmax agree %", "speed-up vs nnunet eager"],
                   disable_numparse=True))  # fmt: skip
    print(
        "peak GMAC/s (square GEMM, same process and threads): "
        + ", ".join(f"{p} {peak.gmacs_per_s:.1f} ({peak.kernel} {peak.size}^3)" for p, peak in peaks.items())
    )
    for kind, note in fallback_notes(kinds).items():
        print(f"{kind}: {note}")
    if args.e2e:
        print(end_to_end(args, patch, overlap, width))


if __name__ == "__main__":
    main()
