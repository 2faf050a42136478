"""``bench data``: make a synthetic CT set, check a data set for broken files, preprocess into the cache.

Data sets (``--data``): an nnU-Net v2 raw folder, an MSD folder, a WORD-style folder, a CSV of image,label
pairs, or BTCV, AMOS22, FLARE22, KiTS23, TotalSegmentator v2 and AbdomenCT-1K as distributed
(docs/organ-vocabulary.md); organ names come from dataset.json, the set's own table or ``--labels``. Without
``--data``, ``check`` and ``prepare`` use the default synthetic set (``$SEGKD_DATA_DIR`` or
``~/.cache/segkd-bench/synthetic-v1``, generated on first use).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench.errors import BenchError, FindingsError
from bench.list_args import parse_float_list, parse_int_list

_EPILOG = """examples:
  bench data synth --out data/synth --cases 16 --seed 0 --preview results/synth_preview.png
  bench data check --data /data/WORD-V0.1.0
  bench data prepare --data /data/Dataset001_Abdomen --out cache/abdomen --spacing 2.5,1.6,1.6 --workers 4"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="make, check and preprocess data sets",
        description=__doc__,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data_sub = p.add_subparsers(dest="data_command", metavar="{synth,check,prepare}", required=True)
    _register_synth(data_sub)
    _register_check(data_sub)
    _register_prepare(data_sub)


def _register_synth(sub: argparse._SubParsersAction) -> None:
    from bench.data.defaults import DEFAULT_CASES, DEFAULT_SEED, DEFAULT_SIZE, DEFAULT_SPACING

    p = sub.add_parser(
        "synth",
        help="write a synthetic abdominal CT set (nnU-Net v2 raw layout)",
        description="Procedural abdominal CT in Hounsfield units with 10 labelled organs (liver, spleen, kidneys, "
        "stomach, gallbladder, pancreas, bladder, aorta, IVC) plus unlabelled bowel, muscle and bone, noise and a "
        "smooth bias. Written as .nii.gz with dataset.json; the same seed gives identical arrays.",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (must not exist or be empty)")
    p.add_argument("--cases", type=int, default=DEFAULT_CASES, help=f"training cases (default: {DEFAULT_CASES})")
    p.add_argument("--test-cases", type=int, default=None, help="test cases (default: 3/8 of --cases, 6 for 16)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default: {DEFAULT_SEED})")
    p.add_argument("--size", default=_csv(DEFAULT_SIZE), help=f"voxels z,y,x (default: {_csv(DEFAULT_SIZE)})")
    p.add_argument(
        "--spacing", default=_csv(DEFAULT_SPACING), help=f"voxel spacing in mm z,y,x (default: {_csv(DEFAULT_SPACING)})"
    )
    p.add_argument("--preview", type=Path, help="also write a PNG of the first case (axial + coronal, labels)")
    p.add_argument("--force", action="store_true", help="replace --out if it already holds files")
    p.set_defaults(func=run_synth)


def _register_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="report every broken file of a data set (exit code 1 if any)",
        description="Read every image and label and print a summary (cases, shapes, spacings, intensity range, "
        "voxels per organ) and one line per problem: unreadable or truncated file, missing label, image/label size, "
        "spacing, origin or direction mismatch, undeclared label values, NaN/inf voxels, empty data set. "
        "Exit code 1 when any problem was found.",
    )
    _data_args(p)
    p.set_defaults(func=run_check)


def _register_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="preprocess a data set into the .npy cache",
        description="Reorient (LPS), crop to the body, normalise and resample every case into CACHE as "
        "memory-mappable .npy + meta.json. Cases already in the cache with the same files and settings are reused. "
        "CT normalisation statistics come from the training cases only.",
    )
    _data_args(p)
    p.add_argument("--out", required=True, type=Path, help="cache folder")
    p.add_argument("--spacing", default="keep", help="target spacing in mm z,y,x, or 'keep' (default: keep)")
    p.add_argument(
        "--normalization",
        default="ct",
        choices=["ct", "zscore", "window", "none"],
        help="ct: nnU-Net CT (clip to training foreground 0.5/99.5 percentiles, z-score); zscore: per volume; "
        "window: clip to --window and scale to [0, 1] (default: ct)",
    )
    p.add_argument(
        "--window", help="HU window for --normalization window, written --window=LOW,HIGH (default: -175,250)"
    )
    p.add_argument("--interpolation", default="linear", choices=["linear", "bspline"], help="image resampling")
    p.add_argument("--no-crop", action="store_true", help="keep the whole field of view")
    p.set_defaults(func=run_prepare)


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, help="data set folder, dataset.json or CSV (default: the synthetic set)")
    p.add_argument("--labels", type=Path, help='organ names: JSON ({"1": "liver"}) or name=int lines')
    _modality_arg(p)
    p.add_argument(
        "--workers", type=int, default=min(4, os.cpu_count() or 1), help="worker processes (default: up to 4)"
    )


def _modality_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--modality",
        default="ct",
        choices=["ct", "mri", "all"],
        help="the cases of a set that mixes CT and MRI (AMOS22) to use (default: ct)",
    )


def run_synth(args: argparse.Namespace) -> int:
    from bench.data.layouts import load_dataset
    from bench.data.preview import write_preview
    from bench.data.synth import generate_dataset

    size = parse_int_list(args.size, "--size", 3)
    spacing = parse_float_list(args.spacing, "--spacing", 3)
    start = time.perf_counter()
    root = generate_dataset(args.out, args.cases, args.test_cases, args.seed, size, spacing, overwrite=args.force)
    print(f"wrote {root} in {time.perf_counter() - start:.1f} s")
    if args.preview:
        dataset = load_dataset(root)
        case = dataset.cases[0]
        write_preview(case.images[0], case.label, args.preview, dataset.labels)
        print(f"wrote {args.preview}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from bench.data.validate import check_dataset

    report = check_dataset(_data_path(args), args.labels, workers=args.workers, progress=True, modality=args.modality)
    print(report.format())
    if not report.ok:
        n_cases = len({i.case_id for i in report.issues})
        raise FindingsError(
            f"{len(report.issues)} problem(s) in {n_cases} case(s) of {report.dataset.root}, listed above"
        )
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    from bench.data.layouts import load_dataset
    from bench.data.preprocess import DEFAULT_WINDOW, PreprocessSettings, load_prepared, prepare_cases

    dataset = load_dataset(_data_path(args), args.labels, args.modality)
    spacing = None if args.spacing == "keep" else tuple(parse_float_list(args.spacing, "--spacing", 3))
    window = None
    if args.window is not None or args.normalization == "window":
        window = tuple(parse_float_list(args.window, "--window", 2, positive=False)) if args.window else DEFAULT_WINDOW
    settings = PreprocessSettings(spacing, args.normalization, window, not args.no_crop, args.interpolation)
    cases = dataset.all_cases()
    if not cases:
        raise BenchError(f"--data {dataset.root}: no cases found")
    start = time.perf_counter()
    prepared = prepare_cases(cases, settings, args.out, args.workers, fit_cases=dataset.cases)
    shapes = [load_prepared(pc)[2]["shape"] for pc in prepared]
    smallest, largest = ("x".join(str(f(axis)) for axis in zip(*shapes)) for f in (min, max))
    print(
        f"{len(prepared)} cases of {dataset.name} in {args.out} ({time.perf_counter() - start:.1f} s); "
        f"shapes (z,y,x) from {smallest} to {largest}"
    )
    return 0


def _data_path(args: argparse.Namespace) -> Path:
    if args.data is not None:
        return args.data
    from bench.data.synth import ensure_default_dataset

    return ensure_default_dataset()


def _csv(values) -> str:
    return ",".join(f"{v:g}" for v in values)
