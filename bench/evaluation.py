"""Evaluation: a model over prepared cases (``bench run``'s test evaluation, validation during training, the
gate's reference check) and folders of predicted masks (``bench evaluate``), both scored by ``bench.metrics``."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import SimpleITK as sitk
from tabulate import tabulate

if TYPE_CHECKING:
    import torch
    from torch import nn

    from bench.training.config import RunConfig

from bench import console
from bench.atomic import atomic_write_text
from bench.data.label_parts import read_label
from bench.data.nifti import label_array, read_header, read_label_mask, write_image
from bench.data.preprocess import PreparedCase, load_prepared, restore_to_original
from bench.errors import BenchError
from bench.metrics import EMPTY_MASK_POLICY, HD95_DEFINITION, evaluate_cases, summarize

MASK_EXTENSIONS = (".nii.gz", ".nii", ".mha")


@dataclass(frozen=True)
class InferenceSettings:
    """How a model runs over a whole volume: Gaussian-blended sliding windows (``bench.inference``)."""

    patch: tuple[int, ...]
    overlap: float
    sw_batch_size: int
    device: torch.device
    amp_dtype: torch.dtype | None = None
    memory_format: torch.memory_format | None = None  # None: contiguous

    @classmethod
    def from_config(cls, config: RunConfig, device: torch.device) -> InferenceSettings:
        """A run configuration's evaluation settings on ``device`` (channels-last only on CUDA)."""
        from bench.device import amp_dtype, memory_format

        return cls(
            patch=tuple(config.eval_patch()),
            overlap=config.overlap,
            sw_batch_size=config.sw_batch_size,
            device=device,
            amp_dtype=amp_dtype(config.amp, device),
            memory_format=memory_format(config.channels_last and device.type == "cuda"),
        )


@dataclass(frozen=True)
class EvalCase:
    """A case to score: its preprocessed volume and, to score in the original geometry, the original label file;
    without one it is scored on the preprocessed label."""

    case_id: str
    prepared: PreparedCase
    label: Path | None = None
    label_parts: tuple[tuple[int, Path], ...] = ()  # TotalSegmentator's structure masks (Case.label_parts)


def evaluate_model(
    model: nn.Module,
    cases: Sequence[EvalCase],
    settings: InferenceSettings,
    labels: dict[int, str] | None = None,
    *,
    hd95: bool = True,
    workers: int = 0,
    predictions: Path | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Per-case, per-organ metrics (``bench.store.PER_CASE_COLUMNS``) of ``model`` on ``cases``.

    Each case is predicted by sliding windows on its preprocessed volume; with a label file it is restored to the
    original geometry and scored there (and written to ``predictions/<case>.nii.gz`` when ``predictions`` is
    given). ``workers > 0`` computes HD95 in that many processes while the next case is predicted; ``hd95=False``
    scores Dice only.
    """
    items = _predicted_cases(model, cases, settings, predictions)
    return evaluate_cases(items, labels, workers=workers, progress=progress, hd95=hd95)


def mean_case_dice(per_case: pd.DataFrame, case_ids: Sequence[str]) -> float:
    """Mean over ``case_ids`` of each case's mean Dice over its scored organs; a case with no organ in either the
    prediction or the ground truth counts as 1.0 (nothing to miss). NaN without cases."""
    if not case_ids:
        return math.nan
    scored = per_case[per_case["status"] != "both_empty"]
    by_case = {case: rows["dice"].tolist() for case, rows in scored.groupby("case", sort=False)}
    return float(np.mean([np.mean(by_case[c]) if by_case.get(c) else 1.0 for c in case_ids]))


def _predicted_cases(
    model: nn.Module, cases: Sequence[EvalCase], settings: InferenceSettings, predictions: Path | None
) -> Iterator[tuple[str, np.ndarray, np.ndarray, tuple[float, ...]]]:
    import torch  # torch and MONAI: imported only when a model is evaluated, not by `bench evaluate`

    from bench.inference import predict_labels

    memory_format = settings.memory_format or torch.contiguous_format

    for case in cases:
        image, label, meta = load_prepared(case.prepared)
        pred = predict_labels(
            model, torch.from_numpy(np.array(image)), tuple(settings.patch), overlap=settings.overlap,
            sw_batch_size=settings.sw_batch_size, device=settings.device, amp_dtype=settings.amp_dtype,
            memory_format=memory_format,
        )  # fmt: skip
        ignore = meta["settings"].get("ignore_label")
        if case.label is None:
            if label is None:
                raise BenchError(f"case {case.case_id}: no label to score against")
            yield case.case_id, *_without_ignored(pred, np.asarray(label), ignore), tuple(map(float, meta["spacing"]))
            continue
        restored = restore_to_original(pred, meta)
        gt_image = read_label(case.label, case.label_parts)
        if predictions is not None:
            write_image(restored, predictions / f"{case.case_id}.nii.gz")
        spacing = tuple(reversed(gt_image.GetSpacing()))  # SimpleITK (x, y, z) -> array axes (z, y, x)
        arrays = _without_ignored(sitk.GetArrayFromImage(restored), sitk.GetArrayFromImage(gt_image), ignore)
        yield case.case_id, *arrays, spacing


def _without_ignored(pred: np.ndarray, gt: np.ndarray, ignore: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``pred`` and ``gt`` with the ground truth's ignore-label voxels out of the scoring (background in both, as
    nnU-Net's evaluation leaves them out)."""
    if ignore is None:
        return pred, gt
    ignored = gt == ignore
    return np.where(ignored, 0, pred), np.where(ignored, 0, gt)


def evaluate_folders(
    pred: Path,
    gt: Path,
    labels: dict[int, str] | None = None,
    workers: int = 0,
    progress: bool = False,
    pred_labels: dict[int, str] | None = None,
) -> pd.DataFrame:
    """Per-case, per-organ metrics of the masks in folder ``pred`` against those in ``gt``, matched by file name.

    Every ground-truth case needs a prediction with the same size, spacing, origin and direction; predictions
    without ground truth are ignored (logged). ``labels`` names the organs to score (None: every value found).
    ``pred_labels`` names the predictions' organs when they come from a model trained on another data set: the
    organs the two share (:func:`bench.data.organs.shared_organs`) are scored, named canonically.
    """
    if workers < 0:
        raise BenchError(f"--workers must be 0 or more, got {workers}")
    remap = None
    if pred_labels is not None:
        labels, remap = _cross_dataset(pred_labels, labels)
    gt_files = mask_files(gt, "--gt")
    pred_files = mask_files(pred, "--pred")
    if not gt_files:
        raise BenchError(f"--gt {gt}: no {', '.join(MASK_EXTENSIONS)} files")
    missing = sorted(set(gt_files) - set(pred_files))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise BenchError(f"--pred {pred}: no prediction for case(s) {shown}")
    cases = sorted(gt_files)
    for case in cases:
        check_geometry(case, pred_files[case], gt_files[case])
    extra = sorted(set(pred_files) - set(gt_files))
    if extra:
        console.warning(f"{len(extra)} prediction(s) without ground truth ignored")
    return evaluate_cases(_LazyCases(cases, pred_files, gt_files, remap), labels, workers=workers, progress=progress)


def _cross_dataset(pred_labels: dict[int, str], labels: dict[int, str] | None) -> tuple[dict[int, str], np.ndarray]:
    """The ground truth's shared organs (canonical names) and a lookup table turning prediction values into the
    ground truth's (0 for an organ the ground truth does not label)."""
    from bench.data.organs import shared_organs

    if labels is None:
        raise BenchError("--pred-labels needs --labels: the ground truth's organ names, to match organs by name")
    to_gt, shared = shared_organs(pred_labels, labels)
    if not shared:
        raise BenchError(
            f"--pred-labels: no organ of the predictions ({', '.join(pred_labels.values())}) is an organ of the "
            f"ground truth ({', '.join(labels.values())}) in the vocabulary of docs/organ-vocabulary.md"
        )
    left_out = [name for value, name in pred_labels.items() if value and value not in to_gt]
    console.note(
        f"scoring the {len(shared)} shared organ(s): {', '.join(shared.values())}"
        + (f"; predicted only, not scored: {', '.join(left_out)}" if left_out else "")
    )
    lut = np.zeros(max(pred_labels) + 1, np.int64)
    for value, target in to_gt.items():
        lut[value] = target
    return {0: "background", **shared}, lut


def write_per_case_csv(df: pd.DataFrame, path: Path) -> None:
    """The per-case rows as CSV (NaN written as ``nan``), atomically."""
    atomic_write_text(path, df.to_csv(index=False, na_rep="nan"))


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


def check_geometry(case: str, pred: Path, gt: Path) -> None:
    """Compare the headers (size, spacing, origin, direction) without reading the voxels."""
    p, g = _mask_header(pred), _mask_header(gt)
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

    def __init__(
        self, cases: list[str], pred_files: dict[str, Path], gt_files: dict[str, Path], remap: np.ndarray | None = None
    ) -> None:
        self.cases, self.pred_files, self.gt_files, self.remap = cases, pred_files, gt_files, remap

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> tuple[str, np.ndarray, np.ndarray, tuple[float, ...]]:
        case = self.cases[index]
        gt_image = read_label_mask(self.gt_files[case])
        spacing = tuple(reversed(gt_image.GetSpacing()))  # SimpleITK (x, y, z) -> array axes (z, y, x)
        pred = label_array(read_label_mask(self.pred_files[case]), self.pred_files[case])
        if self.remap is not None:  # another data set's label values -> the ground truth's (0: not shared)
            known = pred < len(self.remap)
            pred = np.where(known, self.remap[np.where(known, pred, 0)], 0)
        return case, pred, label_array(gt_image, self.gt_files[case]), spacing


def _mask_header(path: Path) -> dict:
    header = read_header(path)
    if header["components"] != 1:
        raise BenchError(f"{path}: a label mask must have one component, found {header['components']}")
    return header


def _pm(mean: float, std: float, digits: int) -> str:
    return "nan" if math.isnan(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _fmt(values: tuple) -> str:
    return str(values) if all(isinstance(v, int) for v in values) else "(" + ", ".join(f"{v:g}" for v in values) + ")"
