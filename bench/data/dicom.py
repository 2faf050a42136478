"""DICOM series folders as inputs: SimpleITK's series reader (GDCM sorts the slices by position).

One series per folder is read as is; a folder holding several is read as its largest CT series (its largest series
when none says CT), with a note naming the choice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import SimpleITK as sitk

from bench import console
from bench.data.nifti import image_suffix, read_image
from bench.errors import BenchError

_MODALITY = "0008|0060"


def series_ids(folder: Path) -> list[str]:
    """The DICOM series UIDs of the files directly in ``folder`` (empty when it holds no DICOM series)."""
    folder = Path(folder)
    if not folder.is_dir() or not any(p.is_file() and not image_suffix(p) for p in folder.iterdir()):
        return []  # no folder, or only NIfTI/MetaImage/NRRD files: GDCM need not look (and warn on stderr)
    with _quiet_itk():
        return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or [])


@contextmanager
def _quiet_itk() -> Iterator[None]:
    """ITK's warnings off: GDCM's "No Series were found" is an answer here, not something to print on stderr."""
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def series_files(folder: Path) -> list[str]:
    """The sorted files of the series :func:`read_series` reads from ``folder``."""
    ids = series_ids(folder)
    if not ids:
        raise BenchError(f"--input {folder}: no DICOM series in the folder")
    with _quiet_itk():
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
    return read_series(path) if Path(path).is_dir() else read_image(path)


def _modality(path: str) -> str:
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return ""
    return reader.GetMetaData(_MODALITY).strip() if reader.HasMetaDataKey(_MODALITY) else ""
