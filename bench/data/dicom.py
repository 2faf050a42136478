"""DICOM series folders as inputs: SimpleITK's series reader (GDCM sorts the slices by position).

One series per folder is read as is; a folder holding several is read as its largest CT series (its largest series
when none says CT), with a note naming the choice.
"""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from bench import console
from bench.errors import BenchError

_MODALITY = "0008|0060"


def series_ids(folder: Path) -> list[str]:
    """The DICOM series UIDs of the files directly in ``folder`` (empty when it holds no DICOM series)."""
    if not Path(folder).is_dir():
        return []
    return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or [])


def series_files(folder: Path) -> list[str]:
    """The sorted files of the series :func:`read_series` reads from ``folder``."""
    ids = series_ids(folder)
    if not ids:
        raise BenchError(f"--input {folder}: no DICOM series in the folder")
    files = {uid: list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)) for uid in ids}
    if len(ids) == 1:
        return files[ids[0]]
    ct = [uid for uid in ids if _modality(files[uid][0]) == "CT"]
    chosen = max(ct or ids, key=lambda uid: len(files[uid]))
    console.note(
        f"--input {folder}: {len(ids)} DICOM series; segmenting the largest {'CT ' if ct else ''}series {chosen} "
        f"({len(files[chosen])} slices)"
    )
    return files[chosen]


def read_series(folder: Path) -> sitk.Image:
    """The volume of ``folder``'s DICOM series (see :func:`series_files`), in the series' own geometry."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(series_files(folder))
    try:
        return reader.Execute()
    except RuntimeError as err:
        raise BenchError(
            f"--input {folder}: cannot read the DICOM series ({str(err).strip().splitlines()[-1]})"
        ) from None


def read_volume(path: Path) -> sitk.Image:
    """An image file (:func:`bench.data.nifti.read_image`) or, for a folder, its DICOM series."""
    from bench.data.nifti import read_image

    return read_series(path) if Path(path).is_dir() else read_image(path)


def _modality(path: str) -> str:
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return ""
    return reader.GetMetaData(_MODALITY).strip() if reader.HasMetaDataKey(_MODALITY) else ""
