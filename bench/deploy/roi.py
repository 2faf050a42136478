"""Coarse-to-fine whole-CT inference: find cheaply where the organs can be, then run the full-resolution sliding
window only there (``bench predict --roi``).

- ``full``: the sliding window covers the whole preprocessed volume (what ``bench run`` evaluates).
- ``body``: the body's bounding box, found on the CT as read (HU, no network) at about :data:`BODY_STEP_MM` per
  voxel: voxels above -500 HU, their largest connected component (which drops the table, cables and noise in the
  air), plus one coarse voxel and :data:`BODY_MARGIN_MM` on each side. The images are cropped to it *before*
  preprocessing, so resampling and normalisation shrink with the window work.
- ``organs``: ``body``, then the network once on the preprocessed image made :data:`COARSE_FACTOR` times coarser
  (average of each 2x2x2 block); the bounding box of its predicted foreground, plus a margin in mm
  (:data:`ORGANS_MARGIN_MM` by default) and grown to at least one window, is segmented at full resolution and every
  voxel outside it is background. When the coarse pass finds no organ, the whole volume is segmented.

The mask is always restored to the input's full geometry: the prediction is placed by its physical coordinates, so a
crop is undone by :func:`bench.data.preprocess.restore_to_original` with zeros outside it.

Hand-written because MONAI has no equivalent: its inferers (``SlidingWindowInferer``, ``SlidingWindowInfererAdapt``,
``PatchInferer``, ``SliceInferer``) all cover the whole input, and nothing there locates a region first. Its box
helper (``generate_spatial_bounding_box``) is used; its ``get_largest_connected_component_mask`` needs scikit-image,
which is not a dependency, so the component comes from ``scipy.ndimage.label``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import SimpleITK as sitk
import torch
from torch import Tensor

from bench.data.preprocess import BODY_HU
from bench.errors import BenchError

ROIS = ("full", "body", "organs")
BODY_STEP_MM = 4.0  # voxel size of the body search: a body is tens of centimetres wide, 4 mm loses nothing of it
BODY_MARGIN_MM = 5.0  # beyond the coarse voxel already added: skin the threshold misses at a partial-volume edge
COARSE_FACTOR = 2
ORGANS_MARGIN_MM = 10.0  # a coarse voxel of a 3 mm grid is 6 mm: its box edge can be that far inside the organ

Box = list[tuple[int, int]]  # (start, stop) per array axis (z, y, x)


def body_box(image: sitk.Image, ct_like: bool = True) -> Box:
    """The body's bounding box in ``image``'s voxel indices, array order (z, y, x), stop exclusive.

    Searched on a strided copy at about :data:`BODY_STEP_MM`: voxels above -500 HU (or non-zero, for an image that is
    not in HU), their largest 26-connected component. The whole image when nothing is found.
    """
    from scipy import ndimage

    array = sitk.GetArrayViewFromImage(image)
    if array.ndim != 3:
        raise BenchError(f"--roi body needs a 3D image, got {array.ndim} dimensions")
    spacing = image.GetSpacing()[::-1]
    steps = [max(1, round(BODY_STEP_MM / s)) for s in spacing]
    coarse = array[:: steps[0], :: steps[1], :: steps[2]]
    mask = coarse > BODY_HU if ct_like else coarse != 0
    components, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        return [(0, n) for n in array.shape]
    sizes = np.bincount(components.ravel())[1:]
    largest = components == int(np.argmax(sizes)) + 1
    start, stop = _bounding_box(largest)
    box = []
    for lo, hi, step, s, n in zip(start, stop, steps, spacing, array.shape):
        margin = step + math.ceil(BODY_MARGIN_MM / s)
        box.append((max(0, lo * step - margin), min(n, (hi - 1) * step + 1 + margin)))
    return box


def crop_image(image: sitk.Image, box: Box) -> sitk.Image:
    """``image`` cut to ``box`` (array order), keeping its physical placement (origin moved, spacing and direction
    kept)."""
    (z0, z1), (y0, y1), (x0, x1) = box
    return image[x0:x1, y0:y1, z0:z1]


def organs_box(
    labels_of: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    spacing: Sequence[float],
    window: Sequence[int],
    margin_mm: float = ORGANS_MARGIN_MM,
    factor: int = COARSE_FACTOR,
) -> Box:
    """The box of a preprocessed image ``[C, D, H, W]`` holding every organ the network finds on a ``factor`` times
    coarser copy, plus ``margin_mm`` (``spacing``: the image's, z, y, x, in mm), grown to at least ``window`` where the
    image allows. ``labels_of`` is the network's label map of a ``[C, d, h, w]`` image. The whole image when the coarse
    pass finds nothing."""
    shape = image.shape[1:]
    size = [max(1, math.ceil(n / factor)) for n in shape]
    coarse = torch.nn.functional.interpolate(torch.from_numpy(np.ascontiguousarray(image))[None], size=size,
                                             mode="area")[0]  # fmt: skip
    found = labels_of(coarse.numpy()) > 0
    if not found.any():
        return [(0, n) for n in shape]
    start, stop = _bounding_box(found)
    box = []
    for lo, hi, s, n, w in zip(start, stop, spacing, shape, window):
        # coarse voxel i covers full-resolution voxels [i * n / size, (i + 1) * n / size)
        scale = n / math.ceil(n / factor)
        margin = math.ceil(margin_mm / s)
        box.append(_grow(max(0, math.floor(lo * scale) - margin), min(n, math.ceil(hi * scale) + margin), w, n))
    return box


def segment_in_box(labels_of: Callable[[np.ndarray], np.ndarray], image: np.ndarray, box: Box) -> np.ndarray:
    """Label map of the whole preprocessed ``image`` with only ``box`` segmented; background elsewhere."""
    inside = (slice(None), *(slice(a, b) for a, b in box))
    labels = np.zeros(image.shape[1:], np.uint8)
    labels[inside[1:]] = labels_of(np.ascontiguousarray(image[inside]))
    return labels


def box_voxels(box: Box) -> int:
    return math.prod(b - a for a, b in box)


def check_roi(roi: str, margin_mm: float) -> None:
    if roi not in ROIS:
        raise BenchError(f"roi must be one of {', '.join(ROIS)}, got {roi!r}")
    if not (isinstance(margin_mm, int | float) and 0 <= margin_mm <= 1000):
        raise BenchError(f"the organs' box margin must be 0 to 1000 mm, got {margin_mm}")


def _bounding_box(mask: np.ndarray | Tensor) -> tuple[list[int], list[int]]:
    from monai.transforms.utils import generate_spatial_bounding_box

    start, stop = generate_spatial_bounding_box(np.asarray(mask)[None])
    return [int(v) for v in start], [int(v) for v in stop]


def _grow(lo: int, hi: int, window: int, n: int) -> tuple[int, int]:
    """``[lo, hi)`` widened about its centre to ``window`` voxels (all of ``n`` when shorter): a window that fits
    sees real neighbours instead of the sliding window's zero padding."""
    if n <= window:
        return 0, n
    if hi - lo >= window:
        return lo, hi
    lo = max(0, min(lo - (window - (hi - lo)) // 2, n - window))
    return lo, lo + window
