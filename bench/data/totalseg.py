"""TotalSegmentator v2 as distributed: ``s0000/ct.nii.gz``, one mask per structure in ``s0000/segmentations/``, and
``meta.csv`` (``;``-separated, its ``split`` column train/val/test).

The masks of the chosen structures are merged into one label map when a case's label is read
(:func:`bench.data.label_parts.read_label`); the default choice is the abdominal organs, ``--labels`` (``name=int``
lines or JSON, names as TotalSegmentator's file names) chooses others and their label values.
"""

from __future__ import annotations

import csv
from pathlib import Path

from bench.data.dataset import Case, Dataset
from bench.errors import BenchError

LOOKS_LIKE = "TotalSegmentator v2: s0000/ct.nii.gz + s0000/segmentations/<structure>.nii.gz, meta.csv"
# The abdominal organs among TotalSegmentator v2's 117 structures, in BTCV's order and then AMOS22's additions.
ABDOMINAL: tuple[str, ...] = (
    "spleen",
    "kidney_right",
    "kidney_left",
    "gallbladder",
    "esophagus",
    "liver",
    "stomach",
    "aorta",
    "inferior_vena_cava",
    "portal_vein_and_splenic_vein",
    "pancreas",
    "adrenal_gland_right",
    "adrenal_gland_left",
    "duodenum",
    "urinary_bladder",
    "small_bowel",
    "colon",
)
_SPLITS = ("train", "val", "test")


def _case_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "ct.nii.gz").exists()) if root.is_dir() else []


def is_totalseg(root: Path, meta: dict) -> bool:
    """A folder of ``sNNNN/ct.nii.gz`` cases with ``segmentations/`` folders."""
    return any((p / "segmentations").is_dir() for p in _case_dirs(root))


def load_totalseg(root: Path, meta: dict, override: dict[int, str] | None, modality: str) -> Dataset:
    labels = override or {0: "background", **{i: name for i, name in enumerate(ABDOMINAL, 1)}}
    splits = _meta_splits(root / "meta.csv")
    groups: dict[str, list[Case]] = {"train": [], "val": [], "test": []}
    for folder in _case_dirs(root):
        masks = folder / "segmentations"
        parts = tuple((value, masks / f"{name}.nii.gz") for value, name in labels.items() if value != 0)
        case = Case(folder.name, [folder / "ct.nii.gz"], masks, parts)
        groups[splits.get(folder.name, "train")].append(case)
    notes = [] if splits else ["no meta.csv: every case is in the training pool"]
    return Dataset(
        "TotalSegmentator", root, labels, groups["train"], groups["test"], groups["val"],
        layout="totalsegmentator", notes=notes,
    )  # fmt: skip


def _meta_splits(path: Path) -> dict[str, str]:
    """``image_id`` -> train/val/test from ``meta.csv`` (``;``-separated as distributed); {} without the file."""
    if not path.is_file():
        return {}
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter=";"))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise BenchError(f"{path}: cannot read ({err})") from None
    if not rows or not {"image_id", "split"} <= set(rows[0]):
        raise BenchError(f"{path}: expected ';'-separated columns with 'image_id' and 'split'")
    out = {}
    for n, row in enumerate(rows, 2):
        split = (row.get("split") or "").strip().lower()
        if split not in _SPLITS:
            raise BenchError(f"{path}:{n}: split must be train, val or test, got {split!r}")
        out[(row.get("image_id") or "").strip()] = split
    return out
