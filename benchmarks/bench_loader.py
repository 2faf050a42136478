"""Patch loading throughput: the .npy cache against reading and preprocessing the NIfTI files for every patch.

Run ``python benchmarks/bench_loader.py``. It generates a synthetic set in a temporary folder (or uses ``--data``),
preprocesses it to the CPU smoke spacing (2.5 x 1.6 x 1.6 mm), then measures, in the same process:

- cache: ``make_patch_loader`` batches from memory-mapped ``.npy`` (without and with augmentation);
- NIfTI: for each patch, read the image and label with SimpleITK and preprocess them (orient, crop, normalise,
  resample) before cropping the patch, which is what a loader without a cache has to do.

It prints patches per second for each and the ratio, and writes a preview PNG of the first case (axial and coronal
slices with the labels) to ``results/synth_preview.png``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.data.layouts import load_dataset
from bench.data.preprocess import PreprocessSettings, ct_intensity_stats, prepare_cases, preprocess_case
from bench.data.preview import write_preview
from bench.data.sampler import make_patch_loader
from bench.data.synth import generate_dataset

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="data set to use (default: a fresh synthetic set)")
    parser.add_argument("--cases", type=int, default=8, help="synthetic training cases (default: 8)")
    parser.add_argument("--patch", default="32,48,48", help="patch size z,y,x (default: 32,48,48)")
    parser.add_argument("--batches", type=int, default=40, help="batches of 2 timed per cache variant (default: 40)")
    parser.add_argument("--nifti-patches", type=int, default=16, help="patches timed on the NIfTI path (default: 16)")
    parser.add_argument("--png", type=Path, default=REPO / "results" / "synth_preview.png", help="preview PNG")
    args = parser.parse_args()
    torch.set_num_threads(2)
    patch = tuple(int(p) for p in args.patch.split(","))

    with tempfile.TemporaryDirectory(prefix="bench_loader-") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        root = args.data or generate_dataset(tmp / "synth", cases=args.cases, test_cases=0, progress=False)
        dataset = load_dataset(root)
        print(f"data set: {dataset.name}, {len(dataset.cases)} training cases ({time.perf_counter() - start:.1f} s)")
        case = dataset.cases[0]
        write_preview(case.images[0], case.label, args.png, dataset.labels)
        print(f"preview: {args.png}")

        settings = PreprocessSettings(target_spacing=(2.5, 1.6, 1.6))
        start = time.perf_counter()
        prepared = prepare_cases(dataset.cases, settings, tmp / "cache", workers=1, progress=False)
        print(f"preprocessing into the cache: {time.perf_counter() - start:.1f} s for {len(prepared)} cases")
        stats = ct_intensity_stats(dataset.cases, tmp / "cache", progress=False)

        rates = {}
        for augment in (False, True):
            loader = make_patch_loader(prepared, patch, batch_size=2, seed=0, augment=augment)
            next(loader)
            start = time.perf_counter()
            for _ in range(args.batches):
                next(loader)
            rates[f"cache (.npy mmap){', augmented' if augment else ''}"] = (
                2 * args.batches / (time.perf_counter() - start)
            )

        rng = np.random.default_rng(0)
        start = time.perf_counter()
        for _ in range(args.nifti_patches):
            image, label, _ = preprocess_case(dataset.cases[int(rng.integers(len(dataset.cases)))], settings, stats)
            starts = [int(rng.integers(0, max(1, n - p + 1))) for n, p in zip(label.shape, patch)]
            window = tuple(slice(s, s + p) for s, p in zip(starts, patch))
            torch.from_numpy(np.ascontiguousarray(image[(slice(None), *window)]))
        rates["NIfTI read + preprocess per patch"] = args.nifti_patches / (time.perf_counter() - start)

    print(f"\npatch {'x'.join(map(str, patch))}, 1 process, torch threads 2")
    for name, rate in rates.items():
        print(f"  {name:<36} {rate:8.1f} patches/s")
    ratio = rates["cache (.npy mmap)"] / rates["NIfTI read + preprocess per patch"]
    print(f"  cache / NIfTI: {ratio:.0f}x")


if __name__ == "__main__":
    main()
