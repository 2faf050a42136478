"""Evaluating folders of predicted NIfTI masks against ground truth (the work behind ``bench evaluate``)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from tabulate import tabulate

from bench.data.nifti import read_image, scan_nifti
from bench.errors import BenchError, DataError
from bench.metrics import EMPTY_MASK_POLICY, HD95_DEFINITION, evaluate_cases, summarize

MASK_EXTENSIONS = (".nii.gz", ".nii", ".mha")


def evaluate_folders(args: argparse.Namespace) -> int:
    """Run ``bench evaluate`` with its parsed arguments."""
    if args.workers < 0:
        raise BenchError(f"--workers must be 0 or more, got {args.workers}")
    gt_files = mask_files(args.gt, "--gt")
    pred_files = mask_files(args.pred, "--pred")
    if not gt_files:
        raise BenchError(f"--gt {args.gt}: no {', '.join(MASK_EXTENSIONS)} files")
    missing = sorted(set(gt_files) - set(pred_files))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise BenchError(f"--pred {args.pred}: no prediction for case(s) {shown}")
    labels = read_labels(args.labels) if args.labels else None
    cases = sorted(gt_files)
    for case in cases:
        check_geometry(case, pred_files[case], gt_files[case])
    extra = sorted(set(pred_files) - set(gt_files))
    if extra:
        print(f"bench evaluate: note: {len(extra)} prediction(s) without ground truth ignored", file=sys.stderr)

    df = evaluate_cases(_LazyCases(cases, pred_files, gt_files), labels, workers=args.workers, progress=True)
    if args.out:
        _write_csv_atomic(df, args.out)
    print(format_summary(df))
    if args.out:
        print(f"per-case rows: {args.out}")
    return 0


def mask_files(folder: Path, arg: str) -> dict[str, Path]:
    """Case name -> file for every mask in ``folder`` (hidden files and other extensions are skipped)."""
    if not folder.is_dir():
        raise BenchError(f"{arg} {folder}: not a folder")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        ext = next((e for e in MASK_EXTENSIONS if path.name.endswith(e)), None)
        # Broken links stay in, so that reading them names the file instead of the case silently disappearing.
        if ext is None or path.name.startswith(".") or not (path.is_file() or path.is_symlink()):
            continue
        case = path.name[: -len(ext)]
        if case in files:
            raise BenchError(f"{arg} {folder}: case {case!r} has two files, {files[case].name} and {path.name}")
        files[case] = path
    return files


def read_labels(path: Path) -> dict[int, str]:
    """Label value -> name from a dataset.json (nnU-Net v2 name -> value, or MSD "value" -> name)."""
    try:
        raw = json.loads(path.read_text())["labels"]
    except (OSError, json.JSONDecodeError) as err:
        raise BenchError(f"--labels {path}: cannot read JSON ({err})") from None
    except (KeyError, TypeError):
        raise BenchError(f"--labels {path}: no 'labels' object") from None
    if not isinstance(raw, dict) or not raw:
        raise BenchError(f"--labels {path}: 'labels' must be a non-empty object")
    if all(isinstance(k, str) and k.strip().isdigit() and isinstance(v, str) for k, v in raw.items()):
        labels = {int(k): v for k, v in raw.items()}
    elif all(isinstance(v, int) and not isinstance(v, bool) for v in raw.values()):
        labels = {v: k for k, v in raw.items()}
        if len(labels) != len(raw):
            raise BenchError(f"--labels {path}: two names share one label value")
    else:
        raise BenchError(
            f"--labels {path}: 'labels' must map names to integer values (nnU-Net v2) or integer strings to "
            "names (MSD); region lists are not supported"
        )
    if any(v < 0 for v in labels):
        raise BenchError(f"--labels {path}: label values must not be negative")
    return labels


def check_geometry(case: str, pred: Path, gt: Path) -> None:
    """Compare the headers (size, spacing, origin, direction) without reading the voxels."""
    p, g = _header(pred), _header(gt)
    for key in ("size", "spacing", "origin", "direction"):
        same = p[key] == g[key] if key == "size" else np.allclose(p[key], g[key], rtol=1e-5, atol=1e-4)
        if not same:
            raise BenchError(
                f"case {case}: prediction {pred.name} and ground truth {gt.name} differ in {key} "
                f"({_fmt(p[key])} vs {_fmt(g[key])})"
            )


def format_summary(df: pd.DataFrame) -> str:
    """Per-organ and overall means with the empty-mask counts, as a text table."""
    s = summarize(df)
    headers = ["organ", "label", "scored", "Dice", "HD95 mm", "missed", "false pos", "both empty"]
    rows = [
        [
            name,
            o["label"],
            o["n_scored"],
            _pm(o["dice"], o["dice_std"], 4),
            _pm(o["hd95"], o["hd95_std"], 2),
            o["n_missed"],
            o["n_false_positive"],
            o["n_both_empty"],
        ]
        for name, o in sorted(s["per_organ"].items(), key=lambda item: item[1]["label"])
    ]
    rows.append(
        [
            "mean over cases",
            "",
            f"{s['n_scored_cases']}/{s['n_cases']} cases",
            _pm(s["dice_mean"], s["dice_std"], 4),
            _pm(s["hd95_mean"], s["hd95_std"], 2),
            s["n_missed"],
            s["n_false_positive"],
            s["n_both_empty"],
        ]
    )
    table = tabulate(rows, headers=headers, disable_numparse=True)
    policy = EMPTY_MASK_POLICY.replace("; ", "\n  ")
    return f"{table}\nHD95: {HD95_DEFINITION}\nempty masks:\n  {policy}"


class _LazyCases(Sequence):
    """Cases read from disk one at a time as they are iterated (only a few volumes in memory), with a length
    for the progress bar."""

    def __init__(self, cases: list[str], pred_files: dict[str, Path], gt_files: dict[str, Path]) -> None:
        self.cases, self.pred_files, self.gt_files = cases, pred_files, gt_files

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> tuple[str, np.ndarray, np.ndarray, tuple[float, ...]]:
        case = self.cases[index]
        gt_image = _read(self.gt_files[case])
        spacing = tuple(reversed(gt_image.GetSpacing()))  # SimpleITK (x, y, z) -> array axes (z, y, x)
        pred = _labels_array(_read(self.pred_files[case]), self.pred_files[case])
        return case, pred, _labels_array(gt_image, self.gt_files[case]), spacing


def _read(path: Path) -> sitk.Image:
    """The mask after the integrity checks of ``bench data check``: SimpleITK alone reads a truncated NIfTI file
    (missing voxels as 0) and NaN voxels (as 0) without complaint, which would score a wrong Dice."""
    nonfinite = scan_nifti(path)
    if nonfinite:
        raise DataError(f"{path}: {nonfinite} NaN or inf voxel(s); a label mask must hold whole numbers")
    return read_image(path)


def _header(path: Path) -> dict:
    if path.is_symlink() and not path.exists():
        raise DataError(f"{path}: broken symbolic link (dangling, or a loop)")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise BenchError(f"{path}: cannot read image header ({str(err).strip().splitlines()[-1]})") from None
    if reader.GetNumberOfComponents() != 1:
        raise BenchError(f"{path}: a label mask must have one component, found {reader.GetNumberOfComponents()}")
    return {
        "size": tuple(reader.GetSize()),
        "spacing": reader.GetSpacing(),
        "origin": reader.GetOrigin(),
        "direction": reader.GetDirection(),
    }


def _labels_array(image: sitk.Image, path: Path) -> np.ndarray:
    """Voxels as non-negative integers; float files are accepted when every value is a whole number."""
    array = sitk.GetArrayFromImage(image)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.array_equal(array, np.round(array)):
            raise BenchError(f"{path}: a label mask must hold whole numbers, found non-integer values")
        array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise BenchError(f"{path}: a label mask must not hold negative values, found {array.min()}")
    return array


def _write_csv_atomic(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            df.to_csv(f, index=False, na_rep="nan")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _pm(mean: float, std: float, digits: int) -> str:
    return "nan" if math.isnan(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _fmt(values: tuple) -> str:
    return str(values) if all(isinstance(v, int) for v in values) else "(" + ", ".join(f"{v:g}" for v in values) + ")"
