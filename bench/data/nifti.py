"""Reading and writing medical images with SimpleITK: one-line errors naming the file, atomic writes."""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from bench.atomic import WriteFailedError, atomic_path
from bench.errors import DataError

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")


def image_suffix(path: Path | str) -> str | None:
    """The image file ending of ``path`` (``.nii.gz``, ``.nii``, ...), or None when it is not an image file."""
    name = Path(path).name.lower()
    return next((s for s in IMAGE_SUFFIXES if name.endswith(s)), None)


def strip_suffix(path: Path | str) -> str:
    """The file name without its image ending: ``word_0001.nii.gz`` -> ``word_0001``."""
    name = Path(path).name
    suffix = image_suffix(name)
    return name[: -len(suffix)] if suffix else name


def read_image(path: Path) -> sitk.Image:
    """Read a whole image (header and voxels), raising DataError naming the file when it is missing or unreadable."""
    if not Path(path).is_file():
        raise DataError(f"{path}: file not found")
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise DataError(f"{path}: unreadable or truncated image ({_first_line(err)})") from None


def read_label_mask(path: Path) -> sitk.Image:
    """A label mask after the integrity checks of ``bench data check``: SimpleITK alone reads a truncated NIfTI file
    (missing voxels as 0) and NaN voxels (as 0) without complaint, which would score a wrong Dice."""
    nonfinite = scan_nifti(path)
    if nonfinite:
        raise DataError(f"{path}: {nonfinite} NaN or inf voxel(s); a label mask must hold whole numbers")
    return read_image(path)


def label_array(image: sitk.Image, path: Path) -> np.ndarray:
    """A label mask's voxels as non-negative integers; float files are accepted when every value is whole."""
    array = sitk.GetArrayFromImage(image)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.array_equal(array, np.round(array)):
            raise DataError(f"{path}: a label mask must hold whole numbers, found non-integer values")
        array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise DataError(f"{path}: a label mask must not hold negative values, found {array.min()}")
    return array


def read_header(path: Path) -> dict:
    """Size, spacing, origin, direction and component count from the header alone (no voxels read)."""
    if Path(path).is_symlink() and not Path(path).exists():
        raise DataError(f"{path}: broken symbolic link (dangling, or a loop)")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise DataError(f"{path}: cannot read image header ({_first_line(err)})") from None
    return {
        "size": tuple(reader.GetSize()),
        "spacing": reader.GetSpacing(),
        "origin": reader.GetOrigin(),
        "direction": reader.GetDirection(),
        "components": reader.GetNumberOfComponents(),
    }


def scan_nifti(path: Path) -> int:
    """Stream a NIfTI file's voxels: raise DataError when it is truncated or corrupt, return its NaN/inf count.

    Written by hand because SimpleITK reads a truncated ``.nii``/``.nii.gz`` without complaint (the missing voxels
    come back as zeros) and silently turns NaN and inf voxels into 0; nibabel is not a dependency and a handful of
    header fields are all it takes. Other formats return 0 (SimpleITK keeps their NaNs visible).
    """
    suffix = image_suffix(path)
    if suffix not in (".nii", ".nii.gz"):
        return 0
    try:
        with gzip.open(path, "rb") if suffix == ".nii.gz" else open(path, "rb") as f:
            head = f.read(544)
            header = _nifti_header(head)
            if header is None:
                raise DataError(f"{path}: unreadable: not a NIfTI file (no valid header)")
            offset, nbytes, dtype = header
            f.read(max(0, offset - len(head)))  # header extensions
            got, nonfinite = 0, 0
            pending = head[offset:]
            while True:
                usable = len(pending) - len(pending) % dtype.itemsize
                if dtype.kind == "f" and usable:
                    values = np.frombuffer(pending[:usable], dtype)[: max(0, (nbytes - got) // dtype.itemsize)]
                    nonfinite += values.size - int(np.count_nonzero(np.isfinite(values)))
                got += usable
                pending = pending[usable:]
                chunk = f.read(1 << 22)
                if not chunk:
                    break
                pending += chunk
    except gzip.BadGzipFile:
        raise DataError(f"{path}: unreadable: not gzip-compressed although named {suffix}") from None
    except EOFError:
        raise DataError(f"{path}: truncated: the compressed data ends early") from None
    except (OSError, zlib.error) as err:
        raise DataError(f"{path}: unreadable: corrupt compressed data ({err})") from None
    if got < nbytes:
        raise DataError(f"{path}: truncated: {got} of the {nbytes} voxel bytes its header describes")
    return nonfinite


_NIFTI_FLOATS = {16: "f4", 64: "f8"}


def _nifti_header(head: bytes) -> tuple[int, int, np.dtype] | None:
    """(voxel offset, voxel bytes, dtype to scan: the float type, else bytes) from a NIfTI-1/2 header, or None."""
    for endian in "<>":
        size = struct.unpack(endian + "i", head[:4])[0] if len(head) >= 4 else 0
        if size == 348 and len(head) >= 348:
            dims = struct.unpack(endian + "8h", head[40:56])
            datatype, bitpix = struct.unpack(endian + "2h", head[70:74])
            offset = int(struct.unpack(endian + "f", head[108:112])[0])
            break
        if size == 540 and len(head) >= 540:
            datatype, bitpix = struct.unpack(endian + "2h", head[12:16])
            dims = struct.unpack(endian + "8q", head[16:80])
            offset = struct.unpack(endian + "q", head[168:176])[0]
            break
    else:
        return None
    if not 1 <= dims[0] <= 7 or bitpix <= 0:
        return None
    nvox = int(np.prod([max(d, 1) for d in dims[1 : dims[0] + 1]], dtype=np.int64))
    dtype = np.dtype(endian + _NIFTI_FLOATS[datatype]) if datatype in _NIFTI_FLOATS else np.dtype("u1")
    return max(offset, size + 4), nvox * bitpix // 8, dtype


def write_image(image: sitk.Image, path: Path, compress: bool = True) -> None:
    """Write ``image`` to ``path`` atomically, read back before it is put in place: SimpleITK's NIfTI writer
    reports a short write only on stderr (``** ERROR: NWAD``), leaving a cut-off or empty file behind."""
    with atomic_path(path, suffix=image_suffix(path) or "", verify=partial(_same_image, image)) as tmp:
        try:
            sitk.WriteImage(image, str(tmp), compress)
        except RuntimeError as err:  # ITK hides the errno: atomic_path tells a full disk by its free space
            raise WriteFailedError(_first_line(err)) from None


def _same_image(image: sitk.Image, written: Path) -> None:
    """Raise unless ``written`` holds ``image``'s grid and all its voxel bytes (a NIfTI file is scanned whole)."""
    header = read_header(written)
    if header["size"] != tuple(image.GetSize()) or header["components"] != image.GetNumberOfComponentsPerPixel():
        raise DataError(f"reads back with size {header['size']}, written {tuple(image.GetSize())}")
    scan_nifti(written)


def make_image(
    array: np.ndarray,
    spacing_zyx: Sequence[float],
    origin_xyz: Sequence[float] = (0.0, 0.0, 0.0),
    direction: Sequence[float] | None = None,
) -> sitk.Image:
    """A SimpleITK image from a [D, H, W] array; spacing is given in array order (z, y, x), origin in (x, y, z)."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing([float(s) for s in reversed(spacing_zyx)])
    image.SetOrigin([float(o) for o in origin_xyz])
    if direction is not None:
        image.SetDirection([float(d) for d in direction])
    return image


def spacing_zyx(image: sitk.Image) -> tuple[float, ...]:
    """Voxel spacing in array order (z, y, x)."""
    return tuple(float(s) for s in reversed(image.GetSpacing()))


def _first_line(err: Exception) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    # ITK messages start with a source location; the last line carries the description.
    return lines[-1] if lines else type(err).__name__
