"""The data set model: a :class:`Case` (image files per channel, its label) and a :class:`Dataset` of them, with
the pieces every layout reader shares (organ names from JSON, MSD-style case lists)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.data.nifti import strip_suffix
from bench.errors import BenchError

MAX_LABEL = 255  # label maps are cached and predicted as uint8


@dataclass(frozen=True)
class Case:
    """One case: its image files (one per channel, in channel order) and its label file (None when unlabelled)."""

    case_id: str
    images: list[Path]
    label: Path | None
    # TotalSegmentator's one mask per structure: (label value, mask file) merged into the label map when read
    # (``bench.data.label_parts``); ``label`` is then the folder holding them.
    label_parts: tuple[tuple[int, Path], ...] = ()


@dataclass
class Dataset:
    """A data set: organ names (0 = background included), the training pool, the data set's own test and val splits."""

    name: str
    root: Path
    labels: dict[int, str]
    cases: list[Case]
    test_cases: list[Case] = field(default_factory=list)
    val_cases: list[Case] = field(default_factory=list)
    layout: str = ""
    unlabelled: list[Case] = field(default_factory=list)  # images without labels outside the splits (FLARE22's)
    regions: dict[str, tuple[int, ...]] = field(default_factory=dict)  # evaluation regions (KiTS23's HECs)
    notes: list[str] = field(default_factory=list)  # what the reader left out or decided, for the summary
    ignore_label: int | None = None  # nnU-Net's "ignore" label: not an organ, excluded from the loss and the scores
    channel_norms: tuple[str, ...] | None = None  # per channel, from nnU-Net's channel_names (see channel_norms)

    @property
    def organs(self) -> dict[int, str]:
        """The labels without background."""
        return {k: v for k, v in self.labels.items() if k != 0}

    def labels_for(self, organs: list[str]) -> dict[int, str]:
        """The labels (background included) of ``organs``, named as in the data set; all of them when empty."""
        by_name = {name: value for value, name in self.organs.items()}
        unknown = [name for name in organs if name not in by_name]
        if unknown:
            raise BenchError(
                f"preset key organs: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not an organ of "
                f"{self.name} (its organs: {', '.join(by_name)})"
            )
        keep = {by_name[name] for name in organs} or set(self.organs)
        return {value: name for value, name in self.labels.items() if value == 0 or value in keep}

    def keep_labels_for(self, organs: list[str]) -> tuple[int, ...] | None:
        """The label values preprocessing keeps for ``organs`` (``PreprocessSettings.keep_labels``); None when empty."""
        return tuple(value for value in self.labels_for(organs) if value != 0) if organs else None

    def all_cases(self) -> list[Case]:
        return [*self.cases, *self.val_cases, *self.test_cases]


# nnU-Net v2's channel_names -> the normalisation it applies (nnunetv2.preprocessing.normalization.map_channel_name_
# to_normalization): CT, noNorm, zscore, rescale_to_0_1 (and rgb_to_0_1); any other name (T1, ADC, ...) is z-scored.
_NNUNET_NORMS = {"ct": "ct", "nonorm": "none", "zscore": "zscore", "rescale_to_0_1": "rescale", "rgb_to_0_1": "rescale"}


def channel_norms(channel_names: dict[str, Any]) -> tuple[str, ...] | None:
    """The normalisation of each channel named in an nnU-Net ``channel_names`` object, in channel order; None when
    every channel is CT (the preset's ``normalization`` then applies, as for every other layout)."""
    ordered = [str(channel_names[k]) for k in sorted(channel_names, key=lambda k: int(str(k)))]
    norms = tuple(_NNUNET_NORMS.get(name.strip().lower(), "zscore") for name in ordered)
    return None if all(n == "ct" for n in norms) else norms


def split_ignore_label(labels: dict[int, str]) -> tuple[dict[int, str], int | None]:
    """nnU-Net's labels without its ``ignore`` entry, and the ignore label's value (None without one)."""
    ignore = next((value for value, name in labels.items() if name == "ignore"), None)
    return {value: name for value, name in labels.items() if value != ignore}, ignore


def labels_from_json(obj: Any, where: str) -> dict[int, str]:
    """``{"0": "background", "1": "liver"}`` (MSD) or ``{"background": 0, "liver": 1}`` (nnU-Net v2) -> {int: name}."""
    if not isinstance(obj, dict) or not obj:
        raise BenchError(f"{where}: 'labels' must be a non-empty mapping of label values and names")
    out: dict[int, str] = {}
    digit_keys = all(str(k).strip().lstrip("-").isdigit() for k in obj)
    for key, value in obj.items():
        if isinstance(value, list):
            raise BenchError(
                f"{where}: region-based label {key!r}: {value} is not supported: regions overlap, so they need one "
                "sigmoid output per region, and the networks here give one softmax class per voxel; give one value "
                "per organ"
            )
        number, name = (key, value) if digit_keys else (value, key)
        try:
            number = int(str(number).strip())
        except ValueError:
            raise BenchError(f"{where}: label value for {name!r} is not a whole number: {number!r}") from None
        if number < 0 or number in out:
            raise BenchError(f"{where}: label value {number} is negative or given twice")
        if number > MAX_LABEL:
            raise BenchError(
                f"{where}: label {name!r}: value {number} is above {MAX_LABEL} (labels are stored as "
                "8-bit values; renumber the organs)"
            )
        out[number] = str(name)
    out.setdefault(0, "background")
    return dict(sorted(out.items()))


def resolve_path(root: Path, rel: str) -> Path:
    p = Path(rel)
    return p if p.is_absolute() else (root / p).absolute()


def msd_cases(root: Path, meta: dict, key: str, need_label: bool) -> list[Case]:
    """The cases of the MSD-style list ``meta[key]`` (``training``, ``validation``, ``test``; absent: none), each
    entry ``{"image", "label"}`` or an image path, relative to ``root``."""
    where = root / "dataset.json"
    entries = meta.get(key, []) or []
    if not isinstance(entries, list):
        raise BenchError(f"{where}: '{key}' must be a list of entries, got {type(entries).__name__}")

    def case(entry: Any) -> Case:
        if isinstance(entry, str):
            entry = {"image": entry}
        if not isinstance(entry, dict) or "image" not in entry:
            raise BenchError(f"{where}: each '{key}' entry needs an 'image' path, got {entry!r}")
        need_str(entry["image"], where, "image")
        label = entry.get("label")
        if need_label and not label:
            raise BenchError(f"{where}: {key} entry {entry['image']!r} has no 'label'")
        if label is not None:
            need_str(label, where, "label")
        image = resolve_path(root, entry["image"])
        return Case(strip_suffix(image), [image], resolve_path(root, label) if label else None)

    return [case(e) for e in entries]


def need_str(value: Any, where: Path, key: str) -> str:
    """``value`` when it is a non-empty string, else a BenchError naming the file and the key."""
    if not isinstance(value, str) or not value.strip():
        raise BenchError(f"{where}: '{key}' must be a non-empty string, got {value!r}")
    return value
