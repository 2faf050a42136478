"""Preprocessing into a cache of memory-mappable arrays, and mapping predictions back to the original images.

Per case: reorient to one orientation (SimpleITK ``DICOMOrient``, LPS by default: array axes z, y, x run to superior,
posterior, left); keep the chosen organs' label values (``keep_labels``; the others become background); crop to the
body (bounding box of voxels above -500 HU for CT normalisations, of non-zero voxels otherwise, always keeping every
kept labelled voxel); normalise intensities; resample to the target spacing (images linear or B-spline, labels
nearest neighbour). Same order as nnU-Net: crop, normalise, resample.

Normalisations: ``ct`` as nnU-Net's CTNormalization (clip to the 0.5 / 99.5 percentiles of the training set's
foreground voxels, then z-score with their mean and std), ``zscore`` (per volume and channel), ``window`` (clip to a
fixed HU window and scale to [0, 1]), ``none``.

Each case lands in ``CACHE/<case_id>-<key>/`` (``image.npy`` float32 [C, D, H, W], ``label.npy`` uint8 [D, H, W],
``locations.npy``, ``meta.json``), where the key hashes the input files (path, size, mtime), the settings and the
intensity statistics; a folder is written under a temporary name and renamed, so it is complete or absent.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from bench import console
from bench.atomic import atomic_save_array, writable_folder
from bench.data.cache_check import files_record, reusable
from bench.data.files import remove_stale, write_json
from bench.data.label_parts import read_label
from bench.data.layouts import Case
from bench.data.nifti import read_image, spacing_zyx
from bench.data.parallel import parallel_map
from bench.errors import BenchError, DataError, DiskFullError, disk_full_as_error, disk_full_error

PREP_VERSION = 1
NORMALIZATIONS = ("ct", "zscore", "window", "none")
CHANNEL_NORMS = ("ct", "zscore", "rescale", "none")  # nnU-Net's CT, ZScore, RescaleTo01, NoNormalization
INTERPOLATIONS = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline}
DEFAULT_WINDOW = (-175.0, 250.0)
BODY_HU = -500.0
FG_SAMPLES_TOTAL = 10**7  # nnU-Net's budget of foreground voxels for the intensity statistics
LOCATIONS_PER_CLASS = 10_000
# A whole abdominal CT at 0.5 mm is about 600x700x700 = 3e8 voxels; 2^30 (4 GiB as float32) is over three times that.
MAX_RESAMPLED_VOXELS = 2**30
_STATS_SEED = 1234


@dataclass(frozen=True)
class PreprocessSettings:
    """How to preprocess. ``target_spacing`` is (z, y, x) in mm, None keeps each case's own spacing.

    ``keep_labels`` are the label values kept in the cached label maps (the organs a run trains on); every other
    value becomes background. None keeps them all.
    """

    target_spacing: tuple[float, float, float] | None = None
    normalization: str = "ct"
    window: tuple[float, float] | None = None
    crop: bool = True
    interpolation: str = "linear"
    orientation: str = "LPS"
    keep_labels: tuple[int, ...] | None = None
    # nnU-Net's ignore label: kept in the cached label maps (whatever keep_labels says), never a class
    ignore_label: int | None = None
    # one scheme per channel (nnU-Net's channel_names: ct, none, zscore, rescale); None: ``normalization`` for all
    channel_norms: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise BenchError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {self.normalization!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise BenchError(f"interpolation must be linear or bspline, got {self.interpolation!r}")
        if self.target_spacing is not None:
            if len(self.target_spacing) != 3 or min(self.target_spacing) <= 0:
                raise BenchError(f"target spacing needs three positive values (z,y,x), got {self.target_spacing}")
            object.__setattr__(self, "target_spacing", tuple(float(s) for s in self.target_spacing))
        if self.normalization == "window":
            lo, hi = self.window or DEFAULT_WINDOW
            if not lo < hi:
                raise BenchError(f"the intensity window needs low < high, got {self.window}")
            object.__setattr__(self, "window", (float(lo), float(hi)))
        elif self.window is not None:
            raise BenchError(f"a window is only used with normalization 'window', not {self.normalization!r}")
        if self.keep_labels is not None:
            if not all(isinstance(v, int) and 0 < v <= 255 for v in self.keep_labels):
                raise BenchError(f"the label values to keep must lie in 1..255, got {self.keep_labels}")
            object.__setattr__(self, "keep_labels", tuple(sorted(set(self.keep_labels))))
        if self.ignore_label is not None and not (isinstance(self.ignore_label, int) and 0 < self.ignore_label <= 255):
            raise BenchError(f"the ignore label must lie in 1..255, got {self.ignore_label!r}")
        if self.channel_norms is not None:
            if not all(n in CHANNEL_NORMS for n in self.channel_norms) or not self.channel_norms:
                raise BenchError(f"channel normalisations must be {', '.join(CHANNEL_NORMS)}, got {self.channel_norms}")
            object.__setattr__(self, "channel_norms", tuple(self.channel_norms))

    def scheme(self, channel: int) -> str:
        """The normalisation of ``channel``: its own (``channel_norms``), else ``normalization``."""
        return self.channel_norms[channel] if self.channel_norms else self.normalization

    @property
    def needs_ct_stats(self) -> bool:
        """Whether a channel is normalised with the training set's foreground statistics (nnU-Net's CT scheme)."""
        return "ct" in (self.channel_norms or (self.normalization,))

    @property
    def ct_like(self) -> bool:
        """Whether the first channel's intensities are HU, so that the body is what lies above -500 HU."""
        return self.scheme(0) in ("ct", "window")


@dataclass(frozen=True)
class PreparedCase:
    """A preprocessed case in the cache."""

    case_id: str
    image_npy: Path
    label_npy: Path | None
    meta_json: Path


def prepare_cases(
    cases: list[Case],
    settings: PreprocessSettings,
    cache_root: Path,
    workers: int = 1,
    fit_cases: list[Case] | None = None,
    progress: bool = True,
    thorough: bool = False,
) -> list[PreparedCase]:
    """Preprocess ``cases`` into ``cache_root`` (whole cases already there are reused, damaged ones built again:
    :mod:`bench.data.cache_check`, checksums compared with ``thorough``) and return them in order.

    ``fit_cases`` are the cases whose foreground defines the ``ct`` normalisation statistics: pass the training
    cases, so the test set does not leak into preprocessing (default: the labelled ones among ``cases``).
    """
    cache_root = writable_folder(Path(cache_root).expanduser().absolute(), "cache folder")
    remove_stale(cache_root, ".*.tmp-*")
    stats = None
    if settings.needs_ct_stats:
        fit = [c for c in (fit_cases if fit_cases is not None else cases) if c.label is not None]
        stats = ct_intensity_stats(fit, cache_root, workers, progress)
    folders = [cache_root / f"{c.case_id}-{_case_key(c, settings, stats)[:16]}" for c in cases]
    todo = [(c, f) for c, f in zip(cases, folders) if not reusable(f, thorough)]
    console.detail(f"preprocessing: {len(cases) - len(todo)} of {len(cases)} cases found in the cache {cache_root}")
    fn = partial(_prepare_one, settings=settings, stats=stats)
    parallel_map(fn, todo, workers, desc="preprocessing", progress=progress)
    return [_prepared(c.case_id, f) for c, f in zip(cases, folders)]


def load_prepared(pc: PreparedCase, mmap: bool = True) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """(image float32 [C, D, H, W], label uint8 [D, H, W] or None, meta); arrays are read-only memory maps if mmap."""
    mode = "r" if mmap else None
    image = np.load(pc.image_npy, mmap_mode=mode)
    label = np.load(pc.label_npy, mmap_mode=mode) if pc.label_npy is not None else None
    return image, label, json.loads(Path(pc.meta_json).read_text())


def restore_to_original(pred: np.ndarray, meta: dict) -> sitk.Image:
    """A label map [D, H, W] in preprocessed space -> a SimpleITK image on the original image's grid.

    The prediction is placed on its physical grid (spacing, origin and direction after preprocessing) and resampled
    with nearest neighbour onto the original size, spacing, origin and direction; voxels outside the crop are 0.
    With the spacing kept this undoes the preprocessing exactly.
    """
    pred = np.asarray(pred)
    if tuple(pred.shape) != tuple(meta["shape"]):
        raise BenchError(f"prediction shape {pred.shape} does not match the preprocessed shape {meta['shape']}")
    dtype = np.uint8 if pred.max(initial=0) < 256 and pred.min(initial=0) >= 0 else np.int32
    moving = sitk.GetImageFromArray(pred.astype(dtype, copy=False))
    moving.SetSpacing(meta["spacing"][::-1])
    moving.SetOrigin(meta["origin"])
    moving.SetDirection(meta["direction"])
    orig = meta["original"]
    reference = sitk.Image([int(s) for s in orig["size"]], moving.GetPixelID())
    reference.SetSpacing(orig["spacing"])
    reference.SetOrigin(orig["origin"])
    reference.SetDirection(orig["direction"])
    return sitk.Resample(moving, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, moving.GetPixelID())


def ct_intensity_stats(cases: list[Case], cache_root: Path, workers: int = 1, progress: bool = True) -> dict:
    """nnU-Net's foreground intensity statistics per channel: mean, std, 0.5 and 99.5 percentiles.

    Foreground voxels (label > 0) are sampled from every case (at most 10^7 in all) with a fixed seed; the result
    is cached in ``cache_root`` keyed by the input files.
    """
    if not cases:
        raise BenchError("normalization 'ct' needs labelled training cases to compute foreground intensity statistics")
    key = _hash({"version": PREP_VERSION, "files": [_file_stamps(c) for c in cases]})
    path = Path(cache_root) / f"ct-stats-{key[:16]}.json"
    if path.is_file():
        return json.loads(path.read_text())
    per_case = max(1, FG_SAMPLES_TOTAL // len(cases))
    samples = parallel_map(partial(_foreground_samples, n=per_case), cases, workers, "intensity statistics", progress)
    n_channels = len(cases[0].images)
    stats = {"channels": []}
    for ch in range(n_channels):
        values = np.concatenate([s[ch] for s in samples if len(s) > ch])
        if values.size == 0:
            raise DataError("the training labels have no foreground voxels; cannot compute 'ct' normalisation")
        lo, hi = np.percentile(values, [0.5, 99.5])
        stats["channels"].append(
            {"mean": float(values.mean()), "std": float(values.std()), "p00_5": float(lo), "p99_5": float(hi)}
        )
    with disk_full_as_error(path):
        write_json(path, stats)
    return stats


def _foreground_samples(case: Case, n: int) -> list[np.ndarray]:
    label = sitk.GetArrayFromImage(read_label(case.label, case.label_parts))
    fg = np.flatnonzero(label > 0)
    rng = np.random.default_rng(_STATS_SEED)
    pick = fg if fg.size <= n else rng.choice(fg, n, replace=False)
    out = []
    for path in case.images:
        arr = sitk.GetArrayFromImage(read_image(path)).ravel()
        if arr.size != label.size:
            raise DataError(f"{path}: image size differs from its label {case.label}; run bench data check")
        out.append(arr[pick].astype(np.float64))
    return out


def _prepare_one(item: tuple[Case, Path], settings: PreprocessSettings, stats: dict | None) -> None:
    case, folder = item
    _write_case(folder, *preprocess_case(case, settings, stats))


def preprocess_case(
    case: Case, settings: PreprocessSettings, stats: dict | None = None
) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Preprocess one case in memory: (image float32 [C, D, H, W], label [D, H, W] or None, meta).

    ``stats`` are the ``ct`` normalisation statistics from :func:`ct_intensity_stats` (needed for ``ct`` only).
    """
    if settings.needs_ct_stats and stats is None:
        raise BenchError("normalization 'ct' needs the training set's intensity statistics (ct_intensity_stats)")
    images = [read_image(p) for p in case.images]
    label = read_label(case.label, case.label_parts) if case.label is not None else None
    return preprocess_images(case, images, label, settings, stats)


def image_geometry(image: sitk.Image) -> dict[str, list]:
    """Size, spacing, origin and direction of ``image`` (SimpleITK order): the ``original`` entry of a case's meta,
    which :func:`restore_to_original` maps a prediction back onto."""
    return {
        "size": list(image.GetSize()),
        "spacing": list(image.GetSpacing()),
        "origin": list(image.GetOrigin()),
        "direction": list(image.GetDirection()),
    }


def preprocess_images(
    case: Case, images: list[sitk.Image], label: sitk.Image | None, settings: PreprocessSettings, stats: dict | None
) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """:func:`preprocess_case` on images already read (``case`` names their files); lets callers time reading."""
    if settings.needs_ct_stats and stats is None:
        raise BenchError("normalization 'ct' needs the training set's intensity statistics (ct_intensity_stats)")
    ref = images[0]
    original = image_geometry(ref)
    for other, path in [*zip(images[1:], case.images[1:]), (label, case.label)]:
        if other is not None and other.GetSize() != ref.GetSize():
            raise DataError(f"{path}: size {other.GetSize()} differs from {case.images[0]}; run bench data check")
        if other is not None:
            other.CopyInformation(ref)  # tiny header differences must not shift the label by a voxel
    images = [sitk.DICOMOrient(im, settings.orientation) for im in images]
    label = sitk.DICOMOrient(label, settings.orientation) if label is not None else None
    oriented = images[0]
    arr = np.stack([sitk.GetArrayFromImage(im).astype(np.float32) for im in images])
    lab = sitk.GetArrayFromImage(label) if label is not None else None
    if lab is not None and (lab.min() < 0 or lab.max() > 255):
        raise DataError(f"{case.label}: label values must lie in 0..255 to be cached as uint8")
    if lab is not None and settings.keep_labels is not None:
        keep = (*settings.keep_labels, *([settings.ignore_label] if settings.ignore_label else []))
        lab = np.where(np.isin(lab, keep), lab, 0).astype(lab.dtype)

    bbox = _crop_box(arr, lab, settings) if settings.crop else [(0, n) for n in arr.shape[1:]]
    sl = tuple(slice(a, b) for a, b in bbox)
    arr, lab = arr[(slice(None), *sl)], (lab[sl] if lab is not None else None)
    origin = oriented.TransformIndexToPhysicalPoint([int(bbox[2][0]), int(bbox[1][0]), int(bbox[0][0])])
    arr = _normalize(arr, settings, stats)

    spacing = spacing_zyx(oriented)
    direction = oriented.GetDirection()
    if settings.target_spacing is not None and not np.allclose(spacing, settings.target_spacing, rtol=1e-4):
        grid = _Grid(spacing, origin, direction)
        new = grid.resampled(arr.shape[1:], settings.target_spacing)
        _check_resampled_size(case, spacing, settings.target_spacing, new.shape, len(arr))
        interp = INTERPOLATIONS[settings.interpolation]
        arr = np.stack([new.resample(grid.image(c), interp, float(c.min())) for c in arr]).astype(np.float32)
        if lab is not None:
            lab = new.resample(grid.image(lab), sitk.sitkNearestNeighbor, 0)
        spacing, origin = settings.target_spacing, new.origin

    meta = {
        "version": PREP_VERSION,
        "case_id": case.case_id,
        "shape": list(arr.shape[1:]),
        "channels": int(arr.shape[0]),
        "spacing": [float(s) for s in spacing],
        "origin": [float(o) for o in origin],
        "direction": [float(d) for d in direction],
        "orientation": settings.orientation,
        "crop_bbox_zyx": [[int(a), int(b)] for a, b in bbox],
        "original_spacing": list(spacing_zyx(ref)),
        "original": original,
        "pad_value": [float(c.min()) for c in arr],
        "labels_present": [] if lab is None else sorted(int(v) for v in np.unique(lab)),
        "settings": asdict(settings),
        "ct_stats": stats,
        "source": {"images": [str(p) for p in case.images], "label": str(case.label) if case.label else None},
    }
    return arr, lab, meta


def _check_resampled_size(case: Case, spacing: Any, target: Any, shape: tuple[int, ...], channels: int) -> None:
    """A DataError before allocating a resampled volume that no CT needs (a header's spacing in metres, say)."""
    voxels = math.prod(shape) * channels
    if voxels > MAX_RESAMPLED_VOXELS:
        mm = "x".join(f"{s:g}" for s in spacing)
        raise DataError(
            f"{case.images[0]}: resampling its {mm} mm voxels to {'x'.join(f'{t:g}' for t in target)} mm would make "
            f"{'x'.join(map(str, shape))} voxels ({voxels:.2g}, more than {MAX_RESAMPLED_VOXELS:.2g}); check the "
            "spacing in its header and the preset's spacing"
        )


def _crop_box(arr: np.ndarray, lab: np.ndarray | None, settings: PreprocessSettings) -> list[tuple[int, int]]:
    """Bounding box (z, y, x) of the body mask and the labels; the whole volume when the mask is empty."""
    mask = (arr > BODY_HU).any(0) if settings.ct_like else (arr != 0).any(0)
    if lab is not None:
        mask |= lab > 0
    box = []
    for axis in range(3):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append((int(hit[0]), int(hit[-1]) + 1) if hit.size else (0, mask.shape[axis]))
    return box


def _normalize(arr: np.ndarray, settings: PreprocessSettings, stats: dict | None) -> np.ndarray:
    out = np.empty_like(arr, dtype=np.float32)
    for c, channel in enumerate(arr):
        scheme = settings.scheme(c)
        if scheme == "ct":
            s = stats["channels"][c]
            out[c] = (np.clip(channel, s["p00_5"], s["p99_5"]) - s["mean"]) / max(s["std"], 1e-8)
        elif scheme == "zscore":
            out[c] = (channel - channel.mean()) / max(float(channel.std()), 1e-8)
        elif scheme == "rescale":
            low, high = float(channel.min()), float(channel.max())
            out[c] = (channel - low) / max(high - low, 1e-8)
        elif scheme == "window":
            lo, hi = settings.window
            out[c] = (np.clip(channel, lo, hi) - lo) / (hi - lo)
        else:
            out[c] = channel
    return out


@dataclass(frozen=True)
class _Grid:
    """A voxel grid in physical space; spacing (z, y, x), origin (x, y, z), direction as SimpleITK has it."""

    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    shape: tuple[int, ...] = ()

    def image(self, arr: np.ndarray) -> sitk.Image:
        im = sitk.GetImageFromArray(np.ascontiguousarray(arr))
        im.SetSpacing([float(s) for s in self.spacing[::-1]])
        im.SetOrigin([float(o) for o in self.origin])
        im.SetDirection(self.direction)
        return im

    def resampled(self, shape: tuple[int, ...], spacing: tuple[float, ...]) -> _Grid:
        """The grid with ``spacing`` covering the same physical box (outer voxel edges aligned)."""
        new_shape = tuple(max(1, round(n * s / t)) for n, s, t in zip(shape, self.spacing, spacing))
        shift_xyz = [0.5 * (t - s) for s, t in zip(self.spacing[::-1], spacing[::-1])]
        d = np.array(self.direction).reshape(3, 3)
        origin = tuple(float(v) for v in np.array(self.origin) + d @ np.array(shift_xyz))
        return _Grid(tuple(spacing), origin, self.direction, new_shape)

    def resample(self, image: sitk.Image, interp: int, default: float) -> np.ndarray:
        ref = sitk.Image([int(n) for n in self.shape[::-1]], image.GetPixelID())
        ref.SetSpacing([float(s) for s in self.spacing[::-1]])
        ref.SetOrigin(self.origin)
        ref.SetDirection(self.direction)
        out = sitk.Resample(image, ref, sitk.Transform(), interp, default, image.GetPixelID())
        return sitk.GetArrayFromImage(out)


def _write_case(folder: Path, image: np.ndarray, label: np.ndarray | None, meta: dict) -> None:
    try:
        with disk_full_as_error(folder):
            _write_case_files(folder, image, label, meta)
    except DiskFullError:  # named after the case's folder, not the temporary one it was written in
        raise disk_full_error(folder) from None


def _write_case_files(folder: Path, image: np.ndarray, label: np.ndarray | None, meta: dict) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        atomic_save_array(tmp / "image.npy", np.ascontiguousarray(image, dtype=np.float32))
        if label is not None:
            atomic_save_array(tmp / "label.npy", np.ascontiguousarray(label, dtype=np.uint8))
            ignore = meta["settings"].get("ignore_label")
            atomic_save_array(tmp / "locations.npy", _class_locations(label, meta["case_id"], ignore))
            meta["class_locations"] = "locations.npy"
        meta["files"] = files_record(tmp)
        write_json(tmp / "meta.json", meta)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "meta.json").is_file():  # not merely another process finishing the same case first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _class_locations(label: np.ndarray, case_id: str, ignore: int | None = None) -> np.ndarray:
    """Up to 10,000 voxels per foreground class (not the ignore label) as int32 rows (class, z, y, x), for
    foreground-forced patches."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(case_id.encode()).digest()[:4], "little"))
    rows = []
    for value in np.unique(label):
        if value in (0, ignore):
            continue
        where = np.argwhere(label == value)
        if len(where) > LOCATIONS_PER_CLASS:
            where = where[rng.choice(len(where), LOCATIONS_PER_CLASS, replace=False)]
        rows.append(np.column_stack([np.full(len(where), value), where]))
    return np.concatenate(rows).astype(np.int32) if rows else np.zeros((0, 4), np.int32)


def _prepared(case_id: str, folder: Path) -> PreparedCase:
    label = folder / "label.npy"
    return PreparedCase(case_id, folder / "image.npy", label if label.is_file() else None, folder / "meta.json")


def _file_stamps(case: Case) -> list[Any]:
    out = []
    labels = [path for _, path in case.label_parts] or [case.label]
    for path in [*case.images, *labels]:
        if path is None:
            continue
        try:
            st = Path(path).stat()
        except OSError:
            raise DataError(f"{path}: file not found") from None
        out.append([str(Path(path).absolute()), st.st_size, st.st_mtime_ns])
    return out


def _case_key(case: Case, settings: PreprocessSettings, stats: dict | None) -> str:
    return _hash({"version": PREP_VERSION, "settings": asdict(settings), "stats": stats, "files": _file_stamps(case)})


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
