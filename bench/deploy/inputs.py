"""What ``bench predict --input`` accepts: one image file, a folder of image files, a DICOM series folder (its mask
written as NIfTI in the series' geometry), or any data set layout that ``bench data`` reads. Every input is checked
(readable header, 3-D, one component, the model's channel count) before anything is predicted or written."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from bench.data.dicom import read_series, series_ids
from bench.data.layouts import Case, load_dataset
from bench.data.nifti import image_suffix, read_image, scan_nifti, strip_suffix
from bench.errors import BenchError

_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
# Mask formats written next to inputs of the same format; single-file formats only, so a mask is one atomic rename.
_OUTPUT_SUFFIXES = (".nii.gz", ".nii", ".mha", ".nrrd")


def find_inputs(path: Path, in_channels: int) -> list[Case]:
    """The cases to segment at ``path``, checked against a model taking ``in_channels`` channels."""
    path = Path(path).expanduser().absolute()
    if not path.exists():
        raise BenchError(f"--input {path}: no such file or folder")
    if path.is_file() and image_suffix(path):
        cases = group_files([path])
    elif series_ids(path):
        cases = [Case(path.name, [path], None)]
    elif path.is_dir() and not ((path / "dataset.json").is_file() or (path / "imagesTr").is_dir()):
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and image_suffix(p))
        if not files:
            raise BenchError(f"--input {path}: no image files (.nii.gz, .nii, .mha, .mhd, .nrrd) in the folder")
        cases = group_files(files)
    else:
        dataset = load_dataset(path)
        cases = [Case(c.case_id, c.images, None) for c in dataset.all_cases()]
        if not cases:
            raise BenchError(f"--input {path}: the data set lists no cases")
    seen: dict[str, Case] = {}
    for case in cases:
        if case.case_id in seen:
            raise BenchError(
                f"--input {path}: two inputs would both write the mask {case.case_id!r} "
                f"({seen[case.case_id].images[0].name} and {case.images[0].name})"
            )
        seen[case.case_id] = case
        check_case(case, in_channels)
    return cases


def group_files(files: list[Path]) -> list[Case]:
    """nnU-Net's naming (``CASE_0000.nii.gz``, ``CASE_0001.nii.gz``: channels of ``CASE``) when every file follows it
    and every case starts at channel 0000; otherwise each file is one single-channel case named after the file."""
    groups: dict[str, dict[int, Path]] = defaultdict(dict)
    for f in files:
        match = _CHANNEL.match(strip_suffix(f))
        if match is None:
            break
        groups[match["case"]][int(match["channel"])] = f
    else:
        if all(sorted(chans) == list(range(len(chans))) for chans in groups.values()):
            return [Case(cid, [chans[k] for k in sorted(chans)], None) for cid, chans in sorted(groups.items())]
    return [Case(strip_suffix(f), [f], None) for f in files]


def check_case(case: Case, in_channels: int) -> None:
    """One clear line when a case cannot be a CT for this model."""
    if len(case.images) != in_channels:
        names = ", ".join(p.name for p in case.images)
        raise BenchError(
            f"case {case.case_id}: {len(case.images)} channel file(s) ({names}) but the model takes "
            f"{in_channels} channel(s)"
        )
    sizes = set()
    for path in case.images:
        if path.is_dir():  # a DICOM series: GDCM reads whole numbers of a 2-D slice stack, 3-D by construction
            sizes.add(tuple(read_series(path).GetSize()))
            continue
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            raise BenchError(f"{path}: not a readable image (corrupt file or unknown format)") from None
        if reader.GetDimension() != 3:
            raise BenchError(f"{path}: not a CT volume: {reader.GetDimension()}-D image, expected 3-D")
        if reader.GetNumberOfComponents() != 1:
            raise BenchError(
                f"{path}: not a CT volume: {reader.GetNumberOfComponents()} components per voxel, "
                "expected 1 (give each channel as its own file)"
            )
        sizes.add(tuple(reader.GetSize()))
        nonfinite = _nonfinite_voxels(path)
        if nonfinite:
            raise BenchError(
                f"{path}: {nonfinite} NaN or inf voxel(s); a CT to segment must hold numbers only (`bench data "
                "check` reports them as errors too)"
            )
    if len(sizes) > 1:
        raise BenchError(f"case {case.case_id}: its channel files differ in size {sorted(sizes)}")


def _nonfinite_voxels(path: Path) -> int:
    """NaN and inf voxels of an image file: NIfTI scanned as stored (SimpleITK reads them as 0), other formats read
    whole (a truncated file is a DataError naming it)."""
    if image_suffix(path) in (".nii", ".nii.gz"):
        return scan_nifti(path)
    array = sitk.GetArrayViewFromImage(read_image(path))
    return 0 if np.issubdtype(array.dtype, np.integer) else int(array.size - np.count_nonzero(np.isfinite(array)))


def output_name(case: Case) -> str:
    """The mask's file name: the case name with the input's file ending (.nii.gz for multi-file formats)."""
    suffix = image_suffix(case.images[0])
    suffix = next((s for s in _OUTPUT_SUFFIXES if suffix == s), ".nii.gz")
    return f"{case.case_id}{suffix}"
