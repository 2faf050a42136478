"""Per-case, per-organ Dice and HD95 (mm) with one empty-mask policy (``docs/metrics.md``), fast for full CT volumes.

HD95 is MedPy's definition (``medpy.metric.binary.hd95``): the 95th percentile of the pooled distances between the
two surfaces in both directions, where a surface is a mask minus its erosion by the 6-connected (face) structure and
the distances come from an exact Euclidean distance transform scaled by the voxel spacing. We call MedPy itself, on a
crop of each organ rather than on the whole volume, which gives the same numbers:

* the crop is the bounding box of prediction and ground truth together, plus ``CROP_MARGIN`` voxels, clipped to the
  image. Outside the union box both masks are empty, so a voxel's erosion neighbourhood sees the same background in
  the crop as in the full image (``binary_erosion`` treats voxels beyond the array as background, as they are
  beyond the box): the surfaces are identical;
* the distance transform is exact (not a chamfer approximation), so the distance from a surface voxel to the
  nearest surface voxel of the other mask depends only on where those surface voxels are, and all of them lie
  inside the crop. Translating the index grid changes no distance.

A margin of 0 is therefore already exact; we keep 1 voxel so that every side of a crop not clipped by the image is a
layer of background, which makes the equality independent of how the erosion treats voxels beyond the array.

Empty masks (``EMPTY_MASK_POLICY``), per case and organ:

* ``both_empty`` (organ absent from ground truth and prediction): Dice NaN, HD95 NaN, excluded from every mean
  (nothing to score) and counted in ``n_both_empty``;
* ``missed`` (ground truth present, prediction empty): Dice 0, HD95 = the image's physical diagonal in mm,
  ``sqrt(sum((size_i * spacing_i)^2))``, larger than any distance two voxels of the image can have; included in the
  means and counted in ``n_missed``;
* ``false_positive`` (ground truth empty, prediction present): Dice 0, HD95 = the same diagonal penalty; included
  in the means and counted in ``n_false_positive``.

Summaries (``summarize``): each case's score is the mean over its scored organs (status ``ok``, ``missed`` or
``false_positive``); ``dice_mean``/``hd95_mean`` are the means of those per-case scores over cases and
``dice_std``/``hd95_std`` their population standard deviation (ddof=0, as ``numpy.std``). Per organ, the mean and
std run over the cases where that organ is scored.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from multiprocessing.pool import AsyncResult

import numpy as np
import pandas as pd
from medpy.metric.binary import hd95 as _medpy_hd95
from scipy import ndimage

from bench.console import Progress
from bench.errors import BenchError
from bench.interrupt import worker_pool
from bench.store import PER_CASE_COLUMNS

EMPTY_MASK_POLICY = (
    "both_empty: Dice NaN, HD95 NaN, excluded from means; "
    "missed (GT present, prediction empty): Dice 0, HD95 = image diagonal in mm, included; "
    "false_positive (GT empty, prediction present): Dice 0, HD95 = image diagonal in mm, included"
)
HD95_DEFINITION = "medpy_pooled_p95"
CROP_MARGIN = 1
STATUSES = ("ok", "missed", "false_positive", "both_empty")

# A crop of both masks plus the spacing: one HD95 computation for a worker process.
_Job = tuple[np.ndarray, np.ndarray, tuple[float, ...]]


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice of two binary masks; NaN when both are empty (see ``EMPTY_MASK_POLICY``)."""
    pred, gt = _binary_pair(pred, gt)
    total = np.count_nonzero(pred) + np.count_nonzero(gt)
    if total == 0:
        return math.nan
    return float(2.0 * np.count_nonzero(pred & gt) / total)


def hd95(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]) -> float:
    """MedPy's HD95 in mm of two binary masks; ``spacing`` follows the array axes ((z, y, x) for SimpleITK arrays).

    NaN when both masks are empty and the image diagonal when exactly one is (see ``EMPTY_MASK_POLICY``).
    """
    pred, gt = _binary_pair(pred, gt)
    spacing = _check_spacing(spacing, pred.ndim)
    has_pred, has_gt = pred.any(), gt.any()
    if not (has_pred and has_gt):
        return math.nan if not (has_pred or has_gt) else image_diagonal(pred.shape, spacing)
    box = _union_box(ndimage.find_objects(pred.view(np.uint8))[0], ndimage.find_objects(gt.view(np.uint8))[0])
    crop = _with_margin(box, pred.shape)
    return _hd95_job(pred[crop], gt[crop], spacing)


def image_diagonal(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Physical diagonal of the image in mm: the HD95 penalty for a missed organ or a false positive."""
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing))))


def evaluate_case(
    case_id: str,
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: Sequence[float],
    labels: dict[int, str] | None,
) -> list[dict]:
    """One row ``{case, label, name, dice, hd95, status}`` per foreground label of ``labels`` (0 is skipped).

    ``pred`` and ``gt`` are integer label volumes of one shape. ``labels=None`` scores every label present in either
    volume, named ``label_<k>``. Label values not in ``labels`` are ignored.
    """
    rows, jobs = _case_rows(case_id, pred, gt, spacing, labels)
    for row, job in zip(rows, jobs):
        if job is not None:
            row["hd95"] = _hd95_job(*job)
    return rows


def evaluate_cases(
    items: Iterable[tuple[str, np.ndarray, np.ndarray, Sequence[float]]],
    labels: dict[int, str] | None,
    workers: int = 0,
    progress: bool = False,
    hd95: bool = True,
) -> pd.DataFrame:
    """Score ``(case_id, pred, gt, spacing)`` items into a long table with ``PER_CASE_COLUMNS``.

    ``workers > 0`` spreads the HD95 of every (case, organ) over that many processes; only the organ crops travel,
    and ``items`` may be a generator that loads cases while the workers compute. With ``labels=None`` every label
    seen in any case is scored in every case (``both_empty`` where a case lacks it). ``hd95=False`` scores Dice
    only (HD95 is NaN where both masks are present), for validation during training.
    """
    total = len(items) if hasattr(items, "__len__") else None
    rows: list[dict] = []
    case_ids: list[str] = []
    with Progress(total, "evaluate", "cases", enabled=progress) as bar:
        cases = _record_case_ids(bar.track(items), case_ids)
        if not hd95:
            for case_id, pred, gt, spacing in cases:
                rows.extend(_case_rows(case_id, pred, gt, spacing, labels)[0])
        elif workers <= 0:
            for case_id, pred, gt, spacing in cases:
                rows.extend(evaluate_case(case_id, pred, gt, spacing, labels))
        else:
            _evaluate_in_pool(cases, labels, workers, rows)
    if labels is None:
        rows = _fill_absent_labels(rows, case_ids)
    return pd.DataFrame(rows, columns=PER_CASE_COLUMNS)


def summarize(df: pd.DataFrame) -> dict:
    """Means over cases of the per-case mean Dice/HD95, their std (ddof=0), per-organ means and empty-mask counts."""
    scored = df[df["status"] != "both_empty"]
    per_case = scored.groupby("case", sort=False)[["dice", "hd95"]].mean()
    counts = df["status"].value_counts()
    per_organ = {}
    for (label, name), group in df.groupby(["label", "name"], sort=True):
        organ = group[group["status"] != "both_empty"]
        organ_counts = group["status"].value_counts()
        per_organ[name] = {
            "label": int(label),
            "dice": _mean(organ["dice"]),
            "dice_std": _std(organ["dice"]),
            "hd95": _mean(organ["hd95"]),
            "hd95_std": _std(organ["hd95"]),
            "n_scored": len(organ),
            **{f"n_{s}": int(organ_counts.get(s, 0)) for s in STATUSES[1:]},
        }
    return {
        "dice_mean": _mean(per_case["dice"]),
        "dice_std": _std(per_case["dice"]),
        "hd95_mean": _mean(per_case["hd95"]),
        "hd95_std": _std(per_case["hd95"]),
        "n_cases": int(df["case"].nunique()),
        "n_scored_cases": len(per_case),
        "n_missed": int(counts.get("missed", 0)),
        "n_false_positive": int(counts.get("false_positive", 0)),
        "n_both_empty": int(counts.get("both_empty", 0)),
        "per_organ": per_organ,
        "hd95_definition": HD95_DEFINITION,
        "empty_mask_policy": EMPTY_MASK_POLICY,
    }


def _case_rows(
    case_id: str, pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float], labels: dict[int, str] | None
) -> tuple[list[dict], list[_Job | None]]:
    """Rows with Dice and status filled in, and for each row the HD95 job still to run (None when settled)."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise BenchError(f"case {case_id}: prediction shape {pred.shape} differs from ground truth {gt.shape}")
    for name, arr in (("prediction", pred), ("ground truth", gt)):
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
            raise BenchError(f"case {case_id}: {name} must be an integer label volume, got dtype {arr.dtype}")
    spacing = _check_spacing(spacing, pred.ndim)
    # One pass per volume finds every label's bounding box (None where a label is absent).
    pred_boxes = _label_boxes(pred)
    gt_boxes = _label_boxes(gt)
    if labels is None:
        present = {k for k, b in enumerate(pred_boxes) if b} | {k for k, b in enumerate(gt_boxes) if b}
        labels = {k: f"label_{k}" for k in sorted(present - {0})}
    diagonal = image_diagonal(pred.shape, spacing)
    rows, jobs = [], []
    for label in sorted(k for k in labels if k != 0):
        pbox = pred_boxes[label] if label < len(pred_boxes) else None
        gbox = gt_boxes[label] if label < len(gt_boxes) else None
        row = {"case": case_id, "label": int(label), "name": labels[label]}
        job = None
        if pbox is None and gbox is None:
            row.update(dice=math.nan, hd95=math.nan, status="both_empty")
        elif pbox is None or gbox is None:
            row.update(dice=0.0, hd95=diagonal, status="missed" if pbox is None else "false_positive")
        else:
            crop = _with_margin(_union_box(pbox, gbox), pred.shape)
            p, g = pred[crop] == label, gt[crop] == label
            # Both masks lie inside the crop, so Dice counted there is the whole-image Dice.
            row.update(dice=dice(p, g), hd95=math.nan, status="ok")
            job = (p, g, spacing)
        rows.append(row)
        jobs.append(job)
    return rows, jobs


def _record_case_ids(items: Iterable[tuple], case_ids: list[str]) -> Iterator[tuple]:
    """Pass items through, appending each case id to ``case_ids``; a repeated id is an error."""
    seen: set[str] = set()
    for item in items:
        if item[0] in seen:
            raise BenchError(f"case {item[0]!r} appears twice")
        seen.add(item[0])
        case_ids.append(item[0])
        yield item


def _evaluate_in_pool(items: Iterable[tuple], labels: dict[int, str] | None, workers: int, out: list[dict]) -> None:
    """Submit every organ's HD95 to a process pool, keeping at most a few jobs per worker in flight (memory)."""
    pending: deque[tuple[dict, AsyncResult]] = deque()
    with worker_pool(workers, "HD95") as pool:
        for case_id, pred, gt, spacing in items:
            rows, jobs = _case_rows(case_id, pred, gt, spacing, labels)
            out.extend(rows)
            for row, job in zip(rows, jobs):
                if job is not None:
                    pending.append((row, pool.apply_async(_hd95_job, job)))
            while len(pending) > 4 * workers:
                row, result = pending.popleft()
                row["hd95"] = result.get()
        for row, result in pending:
            row["hd95"] = result.get()


def _fill_absent_labels(rows: list[dict], case_ids: list[str]) -> list[dict]:
    """Add ``both_empty`` rows so that every case has a row for every label seen in any case."""
    names = {r["label"]: r["name"] for r in rows}
    found = {(r["case"], r["label"]): r for r in rows}
    empty = {"dice": math.nan, "hd95": math.nan, "status": "both_empty"}
    return [
        found.get((case_id, label)) or {"case": case_id, "label": label, "name": names[label], **empty}
        for case_id in case_ids
        for label in sorted(names)
    ]


def _hd95_job(pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, ...]) -> float:
    return float(_medpy_hd95(pred, gt, voxelspacing=spacing))


def _label_boxes(volume: np.ndarray) -> list[tuple[slice, ...] | None]:
    """Bounding box of each label value (index = label); scipy's find_objects needs non-negative integers."""
    if volume.dtype == bool:
        volume = volume.view(np.uint8)
    if volume.size and volume.min() < 0:
        raise BenchError(f"label volumes must not hold negative values, found {volume.min()}")
    return [None, *ndimage.find_objects(volume)]


def _union_box(a: tuple[slice, ...], b: tuple[slice, ...]) -> tuple[slice, ...]:
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


def _with_margin(box: tuple[slice, ...], shape: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(max(0, s.start - CROP_MARGIN), min(n, s.stop + CROP_MARGIN)) for s, n in zip(box, shape))


def _binary_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred).astype(bool, copy=False), np.asarray(gt).astype(bool, copy=False)
    if pred.shape != gt.shape:
        raise BenchError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
    return pred, gt


def _check_spacing(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != ndim or not all(s > 0 for s in spacing):
        raise BenchError(f"spacing must hold {ndim} positive values (one per array axis), got {spacing}")
    return spacing


def _mean(values: pd.Series) -> float:
    return float(values.mean()) if len(values) else math.nan


def _std(values: pd.Series) -> float:
    return float(values.std(ddof=0)) if len(values) else math.nan
