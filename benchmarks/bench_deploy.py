"""Whole-CT seconds of lcovnet, unet3d and nnunet in PyTorch eager, onnxruntime fp32 and onnxruntime int8.

Each network (the registered full width, untrained weights: the time does not depend on them) segments a random
volume of --volume voxels by Gaussian-blended sliding windows at the window size and overlap of --preset (default: the
`default` preset, 64x128x128 windows at overlap 0.5), through blending and argmax, as `bench predict` does in its
infer step. The ONNX files are exported and quantized here (int8 calibrated on patches of a synthetic CT, normalised
to [0, 1] over the -175..250 HU window). Every figure is the median of --runs runs after one warm-up window, all on
the same number of threads (torch.get_num_threads, also given to onnxruntime); ratios are against nnunet eager in the
same run. argmax agreement: share of voxels where the ONNX model's labels equal PyTorch's on the synthetic CT.

Example: OMP_NUM_THREADS=2 python benchmarks/bench_deploy.py --volume 160,256,256
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tabulate import tabulate

from bench.deploy.onnx_export import export_onnx
from bench.deploy.predict import OnnxNetwork, ort_session
from bench.deploy.quantize import quantize_int8
from bench.inference import predict_labels
from bench.profiling.profile import build_model
from bench.profiling.whole_volume import whole_volume_seconds, window_count
from bench.training.config import load_config

CLASSES = 17


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="lcovnet,unet3d,nnunet")
    parser.add_argument("--volume", default="160,256,256", help="D,H,W of the CT (default 160,256,256)")
    parser.add_argument("--preset", default="default", help="preset giving window and overlap (default: default)")
    parser.add_argument("--runs", type=int, default=1, help="timed whole-CT runs per figure (default 1)")
    parser.add_argument("--calibration-patches", type=int, default=8)
    args = parser.parse_args()
    volume = tuple(int(v) for v in args.volume.split(","))
    config = load_config(args.preset)
    patch, overlap = list(config.eval_patch()), config.overlap
    ct = synthetic_ct(volume)
    image = torch.from_numpy(ct)
    print(
        f"volume {'x'.join(map(str, volume))}, window {'x'.join(map(str, patch))}, overlap {overlap} "
        f"({window_count(volume, patch, overlap)} windows), {CLASSES} classes, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}"
    )
    rows, seconds = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            network = build_model(name, 1, CLASSES, deep_supervision=False).eval()
            t = time.perf_counter()
            export_onnx(network, 1, patch, Path(tmp) / f"{name}.onnx")
            quantize_int8(Path(tmp) / f"{name}.onnx", Path(tmp) / f"{name}.int8.onnx",
                          calibration(ct, patch, args.calibration_patches))  # fmt: skip
            prep = time.perf_counter() - t
            with torch.inference_mode():
                eager_labels = predict_labels(network, image, patch, overlap=overlap)
            variants = {"eager": network}
            for kind in ("fp32", "int8"):
                suffix = "" if kind == "fp32" else ".int8"
                variants[f"onnxruntime {kind}"] = OnnxNetwork(ort_session(Path(tmp) / f"{name}{suffix}.onnx"))
            for kind, net in variants.items():
                s = whole_volume_seconds(net, volume, patch, 1, overlap, runs=args.runs)["whole_ct_seconds"]
                seconds[(name, kind)] = s
                agree = "-"
                if kind != "eager":
                    with torch.inference_mode():
                        labels = predict_labels(net, image, patch, overlap=overlap)
                    agree = f"{100 * np.mean(labels == eager_labels):.3f}"
                file = Path(tmp) / f"{name}{'.int8' if kind.endswith('int8') else ''}.onnx"
                size = "-" if kind == "eager" else f"{file.stat().st_size / 2**20:.1f}"
                rows.append([name, kind, size, f"{s:.1f}", agree])
                print(f"  {name} {kind}: {s:.1f} s, argmax agreement {agree} %", flush=True)
            print(f"{name}: export + int8 calibration {prep:.1f} s", flush=True)
    base = seconds.get(("nnunet", "eager"))
    for row in rows:
        row.append(f"{base / seconds[(row[0], row[1])]:.2f}" if base else "-")
    print(tabulate(rows, headers=["model", "runtime", "ONNX MB", "whole CT (s)", "argmax agree %",
                                  "speed-up vs nnunet eager"], disable_numparse=True))  # fmt: skip


if __name__ == "__main__":
    main()
