"""The public abdominal CT sets as their owners distribute them: BTCV, AMOS22, FLARE22, KiTS23, AbdomenCT-1K.

Each reader knows its set's folder and file names, label values and splits, and names the organs in the canonical
vocabulary (:mod:`bench.data.organs`). TotalSegmentator's per-structure masks are read by
:mod:`bench.data.totalseg`. :data:`PUBLIC_LAYOUTS` lists them in the order :func:`bench.data.layouts.load_dataset`
tries them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.data import totalseg
from bench.data.dataset import Case, Dataset, labels_from_json, msd_cases
from bench.data.organs import canonical_labels
from bench.errors import BenchError

MODALITIES = ("ct", "mri", "all")
AMOS_FIRST_MRI_ID = 501  # AMOS22: cases 1-500 are CT, 501-600 MRI (the challenge's data description)

BTCV_LABELS: dict[int, str] = {
    0: "background",
    1: "spleen",
    2: "kidney_right",
    3: "kidney_left",
    4: "gallbladder",
    5: "esophagus",
    6: "liver",
    7: "stomach",
    8: "aorta",
    9: "inferior_vena_cava",
    10: "portal_vein_and_splenic_vein",
    11: "pancreas",
    12: "adrenal_gland_right",
    13: "adrenal_gland_left",
}
AMOS22_LABELS: dict[int, str] = {
    **{k: v for k, v in BTCV_LABELS.items() if k < 10},
    10: "pancreas",
    11: "adrenal_gland_right",
    12: "adrenal_gland_left",
    13: "duodenum",
    14: "urinary_bladder",
    15: "prostate_or_uterus",
}
FLARE22_LABELS: dict[int, str] = {
    0: "background",
    1: "liver",
    2: "kidney_right",
    3: "spleen",
    4: "pancreas",
    5: "aorta",
    6: "inferior_vena_cava",
    7: "adrenal_gland_right",
    8: "adrenal_gland_left",
    9: "gallbladder",
    10: "esophagus",
    11: "stomach",
    12: "duodenum",
    13: "kidney_left",
}
KITS23_LABELS: dict[int, str] = {0: "background", 1: "kidney", 2: "kidney_tumor", 3: "kidney_cyst"}
# KiTS23's hierarchical evaluation classes: the Dice it ranks by is taken over these unions of label values.
KITS23_REGIONS: dict[str, tuple[int, ...]] = {"kidney_and_masses": (1, 2, 3), "masses": (2, 3), "tumor": (2,)}
ABDOMENCT1K_LABELS: dict[int, str] = {0: "background", 1: "liver", 2: "kidney", 3: "spleen", 4: "pancreas"}

_FLARE_IMAGE = re.compile(r"^(?P<case>(?P<set>FLARE22_Tr|FLARE22_Ts|Case)_\d+)_0000\.nii\.gz$")
_FLARE_LABEL = re.compile(r"^(?P<case>FLARE22_T[rs]_\d+)\.nii\.gz$")
_KITS_CASE = re.compile(r"^case_\d{5}$")
_ABDOMEN1K_IMAGE = re.compile(r"^(?P<case>Case_\d+)_0000\.nii\.gz$")
_AMOS_ID = re.compile(r"(\d+)$")


@dataclass(frozen=True)
class PublicLayout:
    """A distributed layout: its name, what it looks like (for the message on an unrecognised folder), how to tell
    it (``detect(root, dataset_json)``) and how to read it (``load(root, dataset_json, labels, modality)``)."""

    name: str
    looks_like: str
    detect: Callable[[Path, dict], bool]
    load: Callable[[Path, dict, dict[int, str] | None, str], Any]


def _files(folder: Path, pattern: str = "*.nii.gz") -> list[Path]:
    """Files matching ``pattern`` in ``folder``, sorted, without hidden ones (macOS ``._x`` files in archives)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(pattern) if not p.name.startswith("."))


def _dataset(name: str, root: Path, labels: dict[int, str], layout: str, **parts: Any) -> Dataset:
    return Dataset(name, root, labels, parts.pop("cases"), layout=layout, **parts)


def _btcv_dir(root: Path) -> Path | None:
    for base in (root / "RawData", root):
        if (base / "Training" / "img").is_dir():
            return base
    return None


def _load_btcv(root: Path, meta: dict, override: dict[int, str] | None, modality: str):
    base = _btcv_dir(root) or root

    def cases(split: str, labelled: bool) -> list[Case]:
        out = []
        for image in _files(base / split / "img", "img*.nii.gz"):
            number = image.name[3:].removesuffix(".nii.gz")
            label = base / split / "label" / f"label{number}.nii.gz"
            out.append(Case(f"img{number}", [image], label if labelled or label.exists() else None))
        return out

    # BTCV's 20 test images ("Testing/img") come without labels: they are kept as an unlabelled test split.
    return _dataset(
        "BTCV", root, override or BTCV_LABELS, "btcv", cases=cases("Training", True), test_cases=cases("Testing", False)
    )


def _is_amos(root: Path, meta: dict) -> bool:
    """AMOS22's dataset.json: named AMOS, or listing ``amos_0001.nii.gz`` files (an MSD set with a validation list
    is not AMOS22: its case numbers say nothing about the modality)."""
    entries = meta.get("training")
    if not isinstance(entries, list) or not entries:
        return False
    named = str(meta.get("name", "")).strip().lower().startswith("amos")
    images = [str(e.get("image", "")) if isinstance(e, dict) else str(e) for e in entries]
    return named or all(Path(image).name.lower().startswith("amos_") for image in images)


def _load_amos(root: Path, meta: dict, override: dict[int, str] | None, modality: str):
    labels = override or (canonical_labels(_meta_labels(root, meta)) if "labels" in meta else AMOS22_LABELS)
    splits = {key: msd_cases(root, meta, key, need_label=key != "test") for key in ("training", "validation", "test")}
    notes = []
    if modality == "all":
        notes.append("CT and MRI cases together: one normalisation (the preset's) for both")
    else:
        for key, cases in splits.items():
            splits[key] = [c for c in cases if _amos_modality(c.case_id) == modality]
        left_out = sum(len(msd_cases(root, meta, k, need_label=False)) for k in splits) - sum(map(len, splits.values()))
        other = "MRI" if modality == "ct" else "CT"
        notes.append(
            f"left out {left_out} {other} case(s) (AMOS22 case ids from {AMOS_FIRST_MRI_ID} on are MRI); "
            f"--modality {'mri' if modality == 'ct' else 'ct'} or all to choose"
        )
    return _dataset(
        str(meta.get("name") or "AMOS22"), root, labels, "amos22",
        cases=splits["training"], val_cases=splits["validation"], test_cases=splits["test"], notes=notes,
        channel_norms=("zscore",) if modality == "mri" else None,  # MRI has no Hounsfield scale: nnU-Net z-scores it
    )  # fmt: skip


def _amos_modality(case_id: str) -> str:
    match = _AMOS_ID.search(case_id)
    return "mri" if match and int(match.group(1)) >= AMOS_FIRST_MRI_ID else "ct"


def _meta_labels(root: Path, meta: dict) -> dict[int, str]:
    return labels_from_json(meta["labels"], str(root / "dataset.json"))


def _flare_files(root: Path) -> list[Path]:
    return [p for depth in ("", "*/", "*/*/") for p in _files(root, f"{depth}*.nii.gz")]


def _is_flare(root: Path, meta: dict) -> bool:
    return any(_FLARE_IMAGE.match(p.name) and p.name.startswith("FLARE22_Tr") for p in _flare_files(root))


def _load_flare(root: Path, meta: dict, override: dict[int, str] | None, modality: str):
    """FLARE22: ``FLARE22_Tr_*`` labelled training cases, ``FLARE22_Ts_*`` tuning cases (validation when their
    labels are there, else the unlabelled validation images as test), ``Case_*`` the unlabelled training pool."""
    files = _flare_files(root)
    labels = {m["case"]: p for p in files if (m := _FLARE_LABEL.match(p.name))}
    groups: dict[str, list[Case]] = {"train": [], "val": [], "test": [], "unlabelled": []}
    for image in files:
        if not (m := _FLARE_IMAGE.match(image.name)):
            continue
        label = labels.get(m["case"])
        role = {"FLARE22_Tr": "train", "Case": "unlabelled"}.get(m["set"], "val" if label else "test")
        groups[role].append(Case(m["case"], [image], label))
    return _dataset(
        "FLARE22", root, override or FLARE22_LABELS, "flare22",
        cases=groups["train"], val_cases=groups["val"], test_cases=groups["test"], unlabelled=groups["unlabelled"],
    )  # fmt: skip


def _kits_dir(root: Path) -> Path | None:
    for base in (root / "dataset", root):
        if any(_KITS_CASE.match(p.name) and (p / "imaging.nii.gz").exists() for p in _dirs(base)):
            return base
    return None


def _dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def _load_kits(root: Path, meta: dict, override: dict[int, str] | None, modality: str):
    base = _kits_dir(root) or root
    cases, tests = [], []
    for folder in (p for p in _dirs(base) if _KITS_CASE.match(p.name)):
        label = folder / "segmentation.nii.gz"
        (cases if label.exists() else tests).append(Case(folder.name, [folder / "imaging.nii.gz"], label))
    tests = [Case(c.case_id, c.images, None) for c in tests]
    regions = {} if override else dict(KITS23_REGIONS)
    return _dataset("KiTS23", root, override or KITS23_LABELS, "kits23", cases=cases, test_cases=tests, regions=regions)


def _abdomen1k_images(root: Path) -> list[Path]:
    return [p for d in _dirs(root) if d.name != "Mask" for p in _files(d) if _ABDOMEN1K_IMAGE.match(p.name)]


def _is_abdomen1k(root: Path, meta: dict) -> bool:
    return (root / "Mask").is_dir() and bool(_abdomen1k_images(root))


def _load_abdomen1k(root: Path, meta: dict, override: dict[int, str] | None, modality: str):
    """AbdomenCT-1K: images ``Case_00001_0000.nii.gz`` in its ``AbdomenCT-1K-ImagePart*`` folders, labels
    ``Mask/Case_00001.nii.gz``; the images without a mask form an unlabelled test split."""
    cases, tests = [], []
    for image in _abdomen1k_images(root):
        case_id = _ABDOMEN1K_IMAGE.match(image.name)["case"]
        label = root / "Mask" / f"{case_id}.nii.gz"
        (cases if label.exists() else tests).append(Case(case_id, [image], label if label.exists() else None))
    return _dataset("AbdomenCT-1K", root, override or ABDOMENCT1K_LABELS, "abdomenct1k", cases=cases, test_cases=tests)


def check_modality(modality: str) -> str:
    """``modality`` when it is one of :data:`MODALITIES`, else a BenchError naming the argument."""
    if modality not in MODALITIES:
        raise BenchError(f"--modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
    return modality


PUBLIC_LAYOUTS: tuple[PublicLayout, ...] = (
    PublicLayout(
        "btcv",
        "BTCV: RawData/Training/img/img0001.nii.gz + RawData/Training/label/label0001.nii.gz",
        lambda root, meta: _btcv_dir(root) is not None,
        _load_btcv,
    ),
    PublicLayout(
        "amos22",
        "AMOS22: dataset.json with 'training'/'validation'/'test' lists (imagesTr, imagesVa, imagesTs)",
        _is_amos,
        _load_amos,
    ),
    PublicLayout(
        "flare22",
        "FLARE22: FLARE22_Tr_0001_0000.nii.gz images + FLARE22_Tr_0001.nii.gz labels (any folders)",
        _is_flare,
        _load_flare,
    ),
    PublicLayout(
        "kits23",
        "KiTS23: case_00000/imaging.nii.gz + case_00000/segmentation.nii.gz",
        lambda root, meta: _kits_dir(root) is not None,
        _load_kits,
    ),
    PublicLayout("totalsegmentator", totalseg.LOOKS_LIKE, totalseg.is_totalseg, totalseg.load_totalseg),
    PublicLayout(
        "abdomenct1k",
        "AbdomenCT-1K: AbdomenCT-1K-ImagePart*/Case_00001_0000.nii.gz + Mask/Case_00001.nii.gz",
        _is_abdomen1k,
        _load_abdomen1k,
    ),
)
