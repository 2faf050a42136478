"""HD95 over whole CT-sized label volumes: ``bench.metrics`` (cropped, optionally parallel) against plain MedPy.

Builds synthetic multi-organ cases (8 ellipsoid organs with bumpy surfaces; predictions shifted, rescaled and
re-bumped, one organ with a stray false-positive blob), times MedPy's ``hd95`` on the full volumes and ours on the
same cases, asserts that every value agrees to 1e-6 mm and prints a table.

    python benchmarks/bench_hd95.py [--size 160,256,256] [--spacing 2.5,1.5,1.5] [--cases 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from medpy.metric.binary import hd95 as medpy_hd95
from scipy import ndimage
from tabulate import tabulate

from bench.list_args import parse_int_list
from bench.metrics import evaluate_case, evaluate_cases

# name: (centre as a fraction of the volume (z, y, x), semi-axes in mm (z, y, x))
ORGANS = {
    "liver": ((0.45, 0.45, 0.30), (75.0, 85.0, 70.0)),
    "spleen": ((0.40, 0.55, 0.78), (50.0, 40.0, 30.0)),
    "kidney_left": ((0.60, 0.62, 0.72), (50.0, 30.0, 28.0)),
    "kidney_right": ((0.62, 0.62, 0.28), (50.0, 30.0, 28.0)),
    "stomach": ((0.38, 0.35, 0.62), (55.0, 45.0, 45.0)),
    "gallbladder": ((0.55, 0.30, 0.38), (30.0, 18.0, 16.0)),
    "pancreas": ((0.52, 0.50, 0.52), (22.0, 18.0, 55.0)),
    "aorta": ((0.50, 0.60, 0.50), (160.0, 11.0, 11.0)),
}
ORGANS_INDEX = {name: i for i, name in enumerate(ORGANS, start=1)}


def _bumps(shape: tuple[int, ...], rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """Smooth random field, coarse noise upsampled to the volume (cheap on 10 M voxels)."""
    coarse = rng.standard_normal(tuple(max(2, n // 8) for n in shape)).astype(np.float32)
    return (
        amplitude
        * ndimage.zoom(coarse, [n / c for n, c in zip(shape, coarse.shape)], order=1)[tuple(slice(0, n) for n in shape)]
    )


def make_case(shape: tuple[int, ...], spacing: tuple[float, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    gt = np.zeros(shape, np.uint8)
    pred = np.zeros(shape, np.uint8)
    gt_bumps, pred_bumps = _bumps(shape, rng, 0.15), _bumps(shape, rng, 0.15)
    for label, (centre, axes_mm) in enumerate(ORGANS.values(), start=1):
        for target, bumps, jitter in ((gt, gt_bumps, 0.0), (pred, pred_bumps, 1.0)):
            shift = rng.normal(0.0, 3.0 * jitter, 3)  # mm
            scale = 1.0 + rng.normal(0.0, 0.06 * jitter, 3)
            level = sum(
                ((g - c * n - s / sp) * sp / (a * k)) ** 2
                for g, c, n, s, sp, a, k in zip(grid, centre, shape, shift, spacing, axes_mm, scale)
            )
            target[(level + bumps) < 1.0] = label
    # A stray blob far from the pancreas: a false-positive component, as networks produce.
    z, y, x = (int(f * n) for f, n in zip((0.2, 0.8, 0.2), shape))
    pred[z : z + 4, y : y + 6, x : x + 6] = ORGANS_INDEX["pancreas"]
    return pred, gt


def _assert_equal(rows: list[dict], reference: dict[tuple[str, int], float]) -> None:
    for row in rows:
        expected = reference[row["case"], row["label"]]
        assert row["status"] == "ok" and abs(row["hd95"] - expected) < 1e-6, (row, expected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="160,256,256", help="volume size z,y,x (default: 160,256,256)")
    parser.add_argument("--spacing", default="2.5,1.5,1.5", help="voxel spacing in mm z,y,x (default: 2.5,1.5,1.5)")
    parser.add_argument("--cases", type=int, default=2, help="number of cases (default: 2)")
    parser.add_argument("--workers", type=int, default=2, help="processes for the parallel run (default: 2)")
    args = parser.parse_args()
    shape = tuple(parse_int_list(args.size, "--size", 3))
    spacing = tuple(float(s) for s in args.spacing.split(","))
    labels = {i: name for name, i in ORGANS_INDEX.items()}

    cases = [(f"case{i}", *make_case(shape, spacing, seed=i), spacing) for i in range(args.cases)]
    rows = []
    reference = {}
    medpy_total = ours_total = 0.0
    for case_id, pred, gt, sp in cases:
        start = time.perf_counter()
        reference.update({(case_id, k): medpy_hd95(pred == k, gt == k, voxelspacing=sp) for k in labels})
        medpy_s = time.perf_counter() - start
        start = time.perf_counter()
        ours = evaluate_case(case_id, pred, gt, sp, labels)
        ours_s = time.perf_counter() - start
        _assert_equal(ours, reference)
        medpy_total += medpy_s
        ours_total += ours_s
        rows.append([case_id, len(labels), f"{medpy_s:.2f}", f"{ours_s:.2f}", f"{medpy_s / ours_s:.1f}x"])

    start = time.perf_counter()
    parallel = evaluate_cases(cases, labels, workers=args.workers)
    parallel_s = time.perf_counter() - start
    _assert_equal(parallel.to_dict("records"), reference)
    rows.append(
        [
            "all, 1 process",
            len(labels) * len(cases),
            f"{medpy_total:.2f}",
            f"{ours_total:.2f}",
            f"{medpy_total / ours_total:.1f}x",
        ]
    )
    rows.append(
        [
            f"all, {args.workers} processes",
            len(labels) * len(cases),
            f"{medpy_total:.2f}",
            f"{parallel_s:.2f}",
            f"{medpy_total / parallel_s:.1f}x",
        ]
    )

    print(f"volume {'x'.join(map(str, shape))}, spacing {spacing} mm, {len(labels)} organs per case")
    print(
        tabulate(
            rows, headers=["cases", "organs", "medpy full s", "bench.metrics s", "speed-up"], disable_numparse=True
        )
    )
    print(f"all {len(labels) * len(cases)} HD95 values equal MedPy's to 1e-6 mm")


if __name__ == "__main__":
    main()
