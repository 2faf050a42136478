"""Tiny replicas of the public abdominal CT sets as their owners distribute them: the folder and file names, label
values, split files and header quirks (mirrored, tilted and slices-first directions) of each, on 8x16x16 volumes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk

SHAPE = (8, 16, 16)  # z, y, x
MIRRORED = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)  # BTCV-style: x and y flipped (RAS-stored)
_T = math.radians(8)
TILTED = (math.cos(_T), 0.0, math.sin(_T), 0.0, 1.0, 0.0, -math.sin(_T), 0.0, math.cos(_T))  # a gantry-tilt-like turn
SLICES_FIRST = (0.0, 0.0, -1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 0.0)  # KiTS: the file's first axis runs through slices


def organ_map(values: list[int], seed: int = 0) -> np.ndarray:
    """A label map holding each of ``values`` as a 3x4x4 block (some shifted by the seed, so cases differ)."""
    label = np.zeros(SHAPE, np.uint8)
    for n, value in enumerate(values):
        y, x = 4 * (n // 4 % 4), 4 * (n % 4)
        z = (seed + n) % 2 + 4 * (n // 16)
        label[z : z + 3, y : y + 4, x : x + 4] = value
    return label


def ct_of(label: np.ndarray, seed: int = 0) -> np.ndarray:
    """HU voxels: soft tissue with a value per organ and noise, air in the first and last columns."""
    rng = np.random.default_rng(seed)
    hu = 20.0 + 8.0 * label + rng.normal(0, 5, label.shape)
    hu[..., 0] = hu[..., -1] = -1000.0
    return hu.astype(np.int16)


def write(path: Path, array: np.ndarray, direction=None, spacing=(2.0, 1.5, 1.5)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing([float(s) for s in reversed(spacing)])
    image.SetOrigin((-12.0, 30.0, 100.0))
    if direction is not None:
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path), True)
    return path


def write_pair(image: Path, label: Path | None, values: list[int], seed: int, direction=None) -> None:
    lab = organ_map(values, seed)
    write(image, ct_of(lab, seed), direction)
    if label is not None:
        write(label, lab, direction)


def btcv(root: Path, train: int = 4) -> Path:
    """``RawData/Training/img/img0001.nii.gz`` + ``label/label0001.nii.gz`` (13 organs), 1 unlabelled test image."""
    base = root / "RawData"
    for n in range(1, train + 1):
        write_pair(base / f"Training/img/img{n:04d}.nii.gz", base / f"Training/label/label{n:04d}.nii.gz",
                   list(range(1, 14)), n, MIRRORED)  # fmt: skip
    write_pair(base / "Testing/img/img0061.nii.gz", None, list(range(1, 14)), 61, MIRRORED)
    return root


AMOS_LABELS = {
    "0": "background", "1": "spleen", "2": "right kidney", "3": "left kidney", "4": "gall bladder",
    "5": "esophagus", "6": "liver", "7": "stomach", "8": "arota", "9": "postcava", "10": "pancreas",
    "11": "right adrenal gland", "12": "left adrenal gland", "13": "duodenum", "14": "bladder",
    "15": "prostate/uterus",
}  # fmt: skip


def amos(root: Path) -> Path:
    """AMOS22's MSD-style dataset.json with training (3 CT, 1 MRI), validation (1 CT, 1 MRI) and test lists."""
    entries: dict[str, list] = {"training": [], "validation": [], "test": []}
    plan = [("training", "Tr", [1, 2, 3, 540]), ("validation", "Va", [8, 580]), ("test", "Ts", [10])]
    for key, tag, ids in plan:
        for i in ids:
            image, label = f"./images{tag}/amos_{i:04d}.nii.gz", f"./labels{tag}/amos_{i:04d}.nii.gz"
            labelled = key != "test"
            write_pair(root / image, root / label if labelled else None, list(range(1, 16)), i, TILTED)
            entries[key].append({"image": image, "label": label} if labelled else {"image": image})
    meta = {
        "name": "AMOS", "description": "replica", "tensorImageSize": "3D", "modality": {"0": "CT"},
        "labels": AMOS_LABELS, "numTraining": 4, "numValidation": 2, "numTest": 1, **entries,
    }  # fmt: skip
    (root / "dataset.json").write_text(json.dumps(meta, indent=4))
    return root


def flare22(root: Path) -> Path:
    """FLARE22: 3 labelled training cases, 1 labelled tuning case, 1 unlabelled validation image, 2 unlabelled."""
    organs = list(range(1, 14))
    for n in (1, 2, 3):
        write_pair(root / f"FLARE22Train/images/FLARE22_Tr_{n:04d}_0000.nii.gz",
                   root / f"FLARE22Train/labels/FLARE22_Tr_{n:04d}.nii.gz", organs, n)  # fmt: skip
    write_pair(root / "Tuning/images/FLARE22_Ts_0001_0000.nii.gz", root / "Tuning/labels/FLARE22_Ts_0001.nii.gz",
               organs, 11)  # fmt: skip
    write_pair(root / "Validation/FLARE22_Ts_0051_0000.nii.gz", None, organs, 51)
    for n in (1, 2):
        write_pair(root / f"UnlabeledCase1-1000/Case_{n:05d}_0000.nii.gz", None, organs, 100 + n)
    return root


def kits23(root: Path) -> Path:
    """KiTS23: ``dataset/case_00000/imaging.nii.gz`` + ``segmentation.nii.gz`` (kidney, tumor, cyst), slices first."""
    for n in range(4):
        case = root / "dataset" / f"case_{n:05d}"
        write_pair(case / "imaging.nii.gz", case / "segmentation.nii.gz", [1, 2, 3], n, SLICES_FIRST)
    (root / "dataset" / "kits23.json").write_text(json.dumps([{"case_id": f"case_{n:05d}"} for n in range(4)]))
    return root


TOTALSEG_EXTRA = ("brain", "vertebrae_L1", "femur_left")  # structures outside the abdominal subset


def totalsegmentator(root: Path) -> Path:
    """TotalSegmentator v2: ``s0000/ct.nii.gz``, one mask per structure, ``meta.csv`` with ``;`` and a split."""
    from bench.data.totalseg import ABDOMINAL

    names = [*ABDOMINAL, *TOTALSEG_EXTRA]
    splits = ["train", "train", "train", "val", "test"]
    for n in range(len(splits)):
        case = root / f"s{n:04d}"
        label = organ_map(list(range(1, len(names) + 1)), n)
        write(case / "ct.nii.gz", ct_of(label, n), MIRRORED)
        for value, name in enumerate(names, 1):
            write(case / "segmentations" / f"{name}.nii.gz", (label == value).astype(np.uint8), MIRRORED)
    rows = ["image_id;age;gender;institute;study_type;split"]
    rows += [f"s{n:04d};{50 + n};f;A;ct abdomen;{split}" for n, split in enumerate(splits)]
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    return root


def abdomenct1k(root: Path) -> Path:
    """AbdomenCT-1K: ``AbdomenCT-1K-ImagePart1/Case_00001_0000.nii.gz`` + ``Mask/Case_00001.nii.gz``, 1 without."""
    for n in (1, 2, 3, 4):
        write_pair(root / f"AbdomenCT-1K-ImagePart1/Case_{n:05d}_0000.nii.gz",
                   root / f"Mask/Case_{n:05d}.nii.gz" if n < 4 else None, [1, 2, 3, 4], n)  # fmt: skip
    return root


REPLICAS = {
    "btcv": btcv,
    "amos22": amos,
    "flare22": flare22,
    "kits23": kits23,
    "totalsegmentator": totalsegmentator,
    "abdomenct1k": abdomenct1k,
}
