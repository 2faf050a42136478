"""Data sets on disk -> :class:`Dataset`: nnU-Net v2 raw, Medical Segmentation Decathlon, WORD-style folders, CSV.

Loading only lists files and reads ``dataset.json``; missing or broken files are left for ``check_dataset`` to report
all at once. Recognised layouts, tried in this order:

- a ``.csv`` file with ``image`` and ``label`` columns (optional ``case_id`` and ``split`` = train/val/test columns;
  several channels as ``a.nii.gz;b.nii.gz``), paths relative to the CSV;
- MSD: ``dataset.json`` with a ``training`` list of ``{"image", "label"}`` (and an optional ``test`` list);
- nnU-Net v2: ``imagesTr/CASE_0000.nii.gz`` (channel suffix) + ``labelsTr/CASE.nii.gz``, optional ``imagesTs`` /
  ``labelsTs``; ``dataset.json`` gives ``channel_names``, ``labels``, ``file_ending`` (and optionally ``dataset``);
- WORD-style folders: ``imagesTr/labelsTr``, ``imagesVal/labelsVal``, ``imagesTs/labelsTs`` holding files of the same
  name (``word_0001.nii.gz``), no channel suffix, ``dataset.json`` optional (WORD's 16 organs are known).

The public sets as their owners distribute them (BTCV, AMOS22, FLARE22, KiTS23, TotalSegmentator v2, AbdomenCT-1K:
:mod:`bench.data.public_sets`) are tried before MSD and nnU-Net v2.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from bench.data.dataset import (
    Case,
    Dataset,
    channel_norms,
    labels_from_json,
    msd_cases,
    need_str,
    resolve_path,
    split_ignore_label,
)
from bench.data.nifti import image_suffix, strip_suffix
from bench.data.public_sets import PUBLIC_LAYOUTS, check_modality
from bench.errors import BenchError
from bench.nesting import too_deep_as_error
from bench.path_names import is_path_component, path_component

WORD_LABELS: dict[int, str] = {
    0: "background",
    1: "liver",
    2: "spleen",
    3: "left_kidney",
    4: "right_kidney",
    5: "stomach",
    6: "gallbladder",
    7: "esophagus",
    8: "pancreas",
    9: "duodenum",
    10: "colon",
    11: "intestine",
    12: "adrenal",
    13: "rectum",
    14: "bladder",
    15: "Head_of_femur_L",
    16: "Head_of_femur_R",
}
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
CSV_COLUMNS = ("image", "label", "case_id", "split")
_FOLDERS = (("imagesTr", "labelsTr", "train"), ("imagesVal", "labelsVal", "val"), ("imagesTs", "labelsTs", "test"))


def load_dataset(path: Path, labels: Path | None = None, modality: str = "ct") -> Dataset:
    """Load the data set at ``path`` (a folder, its ``dataset.json``, or a CSV); ``labels`` overrides organ names;
    ``modality`` (ct, mri, all) chooses the cases of a set that mixes them (AMOS22)."""
    path = Path(path).expanduser().absolute()
    if not path.exists():
        raise BenchError(f"--data {path}: no such file or folder")
    dataset = _load(path, labels, modality)
    source = path if path.suffix.lower() == ".csv" else dataset.root / "dataset.json"
    path_component(dataset.name, f"{source}: data set name")
    for case in [*dataset.all_cases(), *dataset.unlabelled]:
        path_component(case.case_id, f"{source}: case id")
    return dataset


def _load(path: Path, labels: Path | None, modality: str) -> Dataset:
    check_modality(modality)
    override = parse_labels_file(labels) if labels is not None else None
    if path.is_file() and path.suffix.lower() == ".csv":
        return _load_csv(path, override)
    if path.is_file() and path.name == "dataset.json":
        path = path.parent
    if not path.is_dir():
        raise BenchError(f"--data {path}: expected a data set folder, its dataset.json or a CSV of image,label pairs")
    meta = _read_json(path / "dataset.json") if (path / "dataset.json").is_file() else {}
    for layout in PUBLIC_LAYOUTS:
        if layout.detect(path, meta):
            return layout.load(path, meta, override, modality)
    if isinstance(meta.get("training"), list) and not (path / "imagesVal").is_dir():
        return _load_msd(path, meta, override)
    if (path / "imagesTr").is_dir():
        return _load_nnunet(path, meta, override) if _is_nnunet(path, meta) else _load_folders(path, meta, override)
    known = "; ".join(
        [
            "MSD: dataset.json with a 'training' list",
            "nnU-Net v2 or WORD: imagesTr/ + labelsTr/",
            *(layout.looks_like for layout in PUBLIC_LAYOUTS),
            f"or a CSV with the columns {', '.join(CSV_COLUMNS)} (the first two required)",
        ]
    )
    raise BenchError(f"--data {path}: not a recognised data set layout; known layouts: {known}")


def parse_labels_file(path: Path) -> dict[int, str]:
    """Organ names from a JSON file (``{"1": "liver"}``, ``{"liver": 1}`` or a dataset.json) or ``name=int`` lines."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"--labels {path}: no such file")
    text = path.read_text()
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        obj = _read_json(path)
        return labels_from_json(obj.get("labels", obj), f"--labels {path}")
    pairs: dict[str, Any] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise BenchError(f"--labels {path}:{n}: expected name=int, got {line!r}")
        pairs[name.strip()] = value.strip()
    return labels_from_json(pairs, f"--labels {path}")


def _read_json(path: Path) -> dict:
    try:
        with too_deep_as_error(str(path)):
            obj = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BenchError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(obj, dict):
        raise BenchError(f"{path}: expected a JSON object")
    return obj


def _labels(root: Path, meta: dict, override: dict[int, str] | None, fallback: dict[int, str] | None = None):
    if override is not None:
        return override
    if "labels" in meta:
        return labels_from_json(meta["labels"], str(root / "dataset.json"))
    if fallback is not None:
        return dict(fallback)
    raise BenchError(f"--data {root}: no organ names (no dataset.json with 'labels'); pass --labels FILE")


def _image_files(folder: Path, ending: str | None = None) -> list[Path]:
    """Image files in ``folder``, sorted; hidden files (macOS ``._x.nii.gz`` in MSD archives) are skipped.

    Broken symbolic links (dangling, or a loop) are listed too, so that ``check_dataset`` names them instead of the
    case silently disappearing.
    """
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if (p.is_file() or p.is_symlink()) and not p.name.startswith(".")]
    files = [p for p in files if (p.name.endswith(ending) if ending else image_suffix(p))]
    return sorted(files)


def _is_nnunet(root: Path, meta: dict) -> bool:
    """nnU-Net v2 (``CASE_0000`` images, ``CASE`` labels) rather than same-name folders (``word_0001`` in both)."""
    if "dataset" in meta or "channel_names" in meta or "file_ending" in meta:
        return True
    files = _image_files(root / "imagesTr")
    if not files or (root / "labelsTr" / files[0].name).exists():
        return False
    return all(_CHANNEL.match(strip_suffix(p)) for p in files)


def _load_msd(root: Path, meta: dict, override: dict[int, str] | None) -> Dataset:
    cases, tests = msd_cases(root, meta, "training", True), msd_cases(root, meta, "test", False)
    return Dataset(_name(root, meta), root, _labels(root, meta, override), cases, tests, layout="msd")


def _load_nnunet(root: Path, meta: dict, override: dict[int, str] | None) -> Dataset:
    """nnU-Net v2's files, with its semantics: the ``ignore`` label is no organ, ``channel_names`` choose each
    channel's normalisation."""
    dataset = _nnunet_files(root, meta, override)
    dataset.labels, dataset.ignore_label = split_ignore_label(dataset.labels)
    names = meta.get("channel_names") or {}
    if not all(str(k).strip().isdigit() for k in names):
        raise BenchError(f"{root / 'dataset.json'}: 'channel_names' keys must be channel numbers, got {list(names)}")
    dataset.channel_norms = channel_norms(names)
    return dataset


def _nnunet_files(root: Path, meta: dict, override: dict[int, str] | None) -> Dataset:
    labels = _labels(root, meta, override)
    where = root / "dataset.json"
    ending = need_str(meta.get("file_ending", ".nii.gz"), where, "file_ending")
    if not ending.startswith(".") or not is_path_component(ending):
        raise BenchError(f"{where}: 'file_ending' must be a file ending such as \".nii.gz\", got {ending!r}")
    if not isinstance(meta.get("channel_names", {}), dict):
        raise BenchError(f"{where}: 'channel_names' must be an object, got {meta['channel_names']!r}")
    if "dataset" in meta and not isinstance(meta["dataset"], dict):
        raise BenchError(f"{where}: 'dataset' must be an object of case id -> {{images, label}}")
    if isinstance(meta.get("dataset"), dict):  # nnU-Net v2 explicit file list
        cases = []
        for cid, entry in sorted(meta["dataset"].items()):
            if not isinstance(entry, dict):
                raise BenchError(
                    f"{where}: 'dataset' entry {cid!r} must be an object with 'images' and 'label', got {entry!r}"
                )
            label = entry.get("label")
            if label is not None:
                need_str(label, where, f"dataset.{cid}.label")
            images = entry.get("images", [])
            if not isinstance(images, list):
                raise BenchError(f"{where}: 'dataset.{cid}.images' must be a list of paths, got {images!r}")
            images = [resolve_path(root, need_str(p, where, f"dataset.{cid}.images")) for p in images]
            cases.append(Case(cid, images, resolve_path(root, label) if label else None))
        return Dataset(_name(root, meta), root, labels, cases, [], layout="nnunet")
    found = {
        d: [m for p in _image_files(root / d, ending) if (m := _CHANNEL.match(p.name[: -len(ending)]))]
        for d in ("imagesTr", "imagesTs")
    }
    seen = [int(m["channel"]) for ms in found.values() for m in ms]
    n_channels = len(meta.get("channel_names", {})) or (max(seen) + 1 if seen else 1)

    def split(images_dir: str, labels_dir: str, labelled: bool) -> list[Case]:
        ids = {m["case"] for m in found[images_dir]}
        has_labels = labelled or (root / labels_dir).is_dir()
        # A label whose images are gone is still a case: check_dataset then reports its missing image.
        ids |= {p.name[: -len(ending)] for p in _image_files(root / labels_dir, ending)}
        return [
            Case(
                cid,
                [root / images_dir / f"{cid}_{c:04d}{ending}" for c in range(n_channels)],
                root / labels_dir / f"{cid}{ending}" if has_labels else None,
            )
            for cid in sorted(ids)
        ]

    cases, tests = split("imagesTr", "labelsTr", True), split("imagesTs", "labelsTs", False)
    return Dataset(_name(root, meta), root, labels, cases, tests, layout="nnunet")


def _load_folders(root: Path, meta: dict, override: dict[int, str] | None) -> Dataset:
    groups: dict[str, list[Case]] = {}
    names = []
    for images_dir, labels_dir, role in _FOLDERS:
        has_labels = role == "train" or (root / labels_dir).is_dir()
        files = _image_files(root / images_dir)
        # A label whose image is gone is still a case: check_dataset then reports its missing image.
        names_here = {p.name for p in files}
        files += [root / images_dir / p.name for p in _image_files(root / labels_dir) if p.name not in names_here]
        files = sorted(files)
        names += [p.name for p in files]
        groups[role] = [Case(strip_suffix(p), [p], root / labels_dir / p.name if has_labels else None) for p in files]
    word = names and all(n.lower().startswith("word_") for n in names)
    labels = _labels(root, meta, override, WORD_LABELS if word else None)
    layout = "word" if word else "folders"
    return Dataset(_name(root, meta), root, labels, groups["train"], groups["test"], groups["val"], layout=layout)


def _load_csv(path: Path, override: dict[int, str] | None) -> Dataset:
    root = path.parent
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise BenchError(f"--data {path}: cannot read CSV ({err})") from None
    if not rows or not {"image", "label"} <= {(k or "").strip().lower() for k in rows[0]}:
        raise BenchError(
            f"--data {path}: the CSV needs a header row with 'image' and 'label' columns "
            f"(the columns: {', '.join(CSV_COLUMNS)}; split is train, val or test)"
        )
    groups: dict[str, list[Case]] = {"train": [], "val": [], "test": []}
    named = _csv_case_ids(path, rows)
    for n, raw in enumerate(rows, 2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        if not row["image"]:
            raise BenchError(f"--data {path}:{n}: empty 'image' cell")
        images = [resolve_path(root, p.strip()) for p in row["image"].split(";") if p.strip()]
        label = resolve_path(root, row["label"]) if row["label"] else None
        cid = row.get("case_id") or row.get("id") or named(images[0])
        role = (row.get("split") or "train").lower()
        if role not in groups:
            raise BenchError(f"--data {path}:{n}: split must be train, val or test, got {role!r}")
        groups[role].append(Case(cid, images, label))
    json_path = root / "dataset.json"
    meta = _read_json(json_path) if override is None and json_path.is_file() else {}
    return Dataset(
        path.stem, root, _labels(path, meta, override), groups["train"], groups["test"], groups["val"], layout="csv"
    )


def _csv_case_ids(path: Path, rows: list[dict]):
    """How a CSV row without a case id is named: its image's file name, or, when several images share a file name
    (KiTS23's ``case_00000/imaging.nii.gz``), the folder holding it."""
    rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in r.items()} for r in rows]
    firsts = [Path(r["image"].split(";")[0].strip()) for r in rows if not (r.get("case_id") or r.get("id"))]
    if len({strip_suffix(p) for p in firsts}) == len(firsts):
        return strip_suffix
    if len({p.parent.name for p in firsts}) == len(firsts):
        return lambda image: image.parent.name
    raise BenchError(
        f"--data {path}: several images share a file name and a folder name; add a 'case_id' column "
        f"(the columns: {', '.join(CSV_COLUMNS)})"
    )


def _name(root: Path, meta: dict) -> str:
    return str(meta.get("name") or root.name)
