"""Whole-CT seconds of lcovnet, unet3d and nnunet per runtime: PyTorch eager (fp32 and bf16 autocast),
torch.compile, onnxruntime fp32 and onnxruntime int8; on the CPU or a GPU.

Each network (the registered full width unless --base-channels, untrained weights: the time does not depend on them)
segments a phantom CT of --volume voxels by Gaussian-blended sliding windows at the window size and overlap of
--preset (default: the `default` preset, 64x128x128 windows at overlap 0.5), through blending and argmax, as
`bench predict` does in its infer step. Every whole-CT figure is the median of --runs runs after a warm-up window;
on a GPU each run is timed with CUDA events after a synchronize. "patch ms" is the median of --patch-runs forward
passes of one window after --patch-warmup (CUDA events on a GPU). The ONNX files are exported and quantized here
(int8 calibrated on patches of the phantom CT, normalised to [0, 1] over the -175..250 HU window); onnxruntime runs
on the CUDA provider where the installed onnxruntime has it, else on the CPU, with as many threads as torch.
Ratios are against nnunet eager in the same run; argmax agreement is the share of voxels whose label equals eager
fp32's on the phantom CT.

--kernels N prints, per network, the N operators with the most self time (CUDA time on a GPU) of one window in fp32
and in bf16, from torch.profiler: where a window's time goes.

Examples:
  OMP_NUM_THREADS=2 python benchmarks/bench_deploy.py --volume 160,256,256
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
from bench.deploy.predict import OnnxNetwork, ort_providers, ort_session
from bench.deploy.quantize import quantize_int8
from bench.device import resolve_device
from bench.inference import predict_labels
from bench.networks import build_model
from bench.profiling.timing import time_forward
from bench.profiling.whole_volume import whole_volume_seconds, window_count
from bench.training.config import load_config

CLASSES = 17
RUNTIMES = ("eager", "bf16", "compile", "ort-fp32", "ort-int8")
DEFAULT_RUNTIMES = {"cpu": "eager,ort-fp32,ort-int8", "cuda": "eager,bf16,compile,ort-fp32"}


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
    """The requested runtimes of ``network``, exporting (and quantizing) it to ONNX first if one is asked for."""
    onnx = tmp / f"{name}.onnx"
    if any(kind.startswith("ort") for kind in kinds):
        export_onnx(network.cpu(), 1, patch, onnx)
        network.to(device)
    if "ort-int8" in kinds:
        quantize_int8(onnx, tmp / f"{name}.int8.onnx", calibration(ct, patch, calibration_patches))
    made = {}
    for kind in kinds:
        if kind == "eager":
            made[kind] = Runtime(network, device)
        elif kind == "bf16":
            made[kind] = Runtime(network, device, torch.bfloat16)
        elif kind == "compile":
            made[kind] = Runtime(torch.compile(network), device)
        else:
            file = onnx if kind == "ort-fp32" else tmp / f"{name}.int8.onnx"
            # onnxruntime moves the windows to its own provider; the stitching stays on the CPU.
            made[kind] = Runtime(OnnxNetwork(ort_session(file, device)), torch.device("cpu"), file=file)
    return made


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
    args = parser.parse_args(argv)
    unknown = sorted(set(args.runtimes.split(",")) - set(RUNTIMES)) if args.runtimes else []
    if unknown:
        parser.error(f"--runtimes: unknown {', '.join(unknown)}; choose from {', '.join(RUNTIMES)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    kinds = (args.runtimes or DEFAULT_RUNTIMES[device.type]).split(",")
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
    if any(kind.startswith("ort") for kind in kinds):
        print(f"onnxruntime providers: {', '.join(ort_providers(device))}")
    rows, seconds = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            network = build_model(name, 1, CLASSES, deep_supervision=False, **width).eval().to(device)
            window = torch.zeros(1, 1, *patch, device=device)
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
                size = f"{runtime.file.stat().st_size / 2**20:.1f}" if runtime.file else "-"
                rows.append([name, kind, size, f"{patch_ms:.1f}", f"{s:.2f}", agree])
                print(f"  {name} {kind}: patch {patch_ms:.1f} ms, whole CT {s:.2f} s, argmax agreement {agree} %",
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
    print(tabulate(rows, headers=["model", "runtime", "ONNX MB", "patch ms", "whole CT (s)", "argmax agree %",
                                  "speed-up vs nnunet eager"], disable_numparse=True))  # fmt: skip


if __name__ == "__main__":
    main()
