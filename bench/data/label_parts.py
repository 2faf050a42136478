"""A case's label map, read from one file or merged from one mask per structure (TotalSegmentator)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from bench.data.nifti import read_image
from bench.errors import DataError


def read_label(label: Path, parts: tuple[tuple[int, Path], ...] = ()) -> sitk.Image:
    """A case's label map: its ``label`` file, or its structure masks ``parts`` (``Case.label_parts``) merged."""
    if not parts:
        return read_image(label)
    return merge_masks([(value, read_image(path), path) for value, path in parts])


def merge_masks(masks: list[tuple[int, sitk.Image, Path]]) -> sitk.Image:
    """One uint8 label map from ``(value, mask image, its file)``: each mask's non-zero voxels get its value (a later
    structure wins where two overlap), on the first mask's grid; a mask of another size is a DataError."""
    first = masks[0][1]
    merged = np.zeros(sitk.GetArrayViewFromImage(first).shape, np.uint8)
    for value, image, path in masks:
        if image.GetSize() != first.GetSize():
            raise DataError(f"{path}: size {image.GetSize()} differs from {masks[0][2]}'s {first.GetSize()}")
        merged[sitk.GetArrayViewFromImage(image) > 0] = value
    out = sitk.GetImageFromArray(merged)
    out.CopyInformation(first)
    return out
