"""``check_dataset``: read every file of a data set and report every problem, never stopping at the first.

Problems: missing, unreadable or truncated files, broken symbolic links, labels whose image is gone; images that are
not 3-D single-component; channels or label whose size, spacing, origin or direction differ from the first image;
label values not declared in the organ names; non-integer labels; NaN or inf voxels; duplicate case ids; an empty
data set. Warnings (usable, but probably a mistake): a training label without any organ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tabulate import tabulate

from bench.data.label_parts import merge_masks
from bench.data.layouts import Case, Dataset, load_dataset
from bench.data.nifti import read_image, scan_nifti, spacing_zyx
from bench.data.parallel import parallel_map
from bench.errors import DataError

GEOMETRY_ATOL = 1e-3  # mm for spacing and origin, unitless for direction cosines


@dataclass(frozen=True)
class CheckIssue:
    """One problem: the case, the file, what is wrong."""

    case_id: str
    file: Path
    message: str

    def __str__(self) -> str:
        return f"{self.case_id}: {self.file}: {self.message}"


@dataclass
class CaseSummary:
    """What a readable case looks like: shape and spacing (z, y, x), intensity range, labelled voxels per value."""

    case_id: str
    role: str
    shape: tuple[int, ...] | None = None
    spacing: tuple[float, ...] | None = None
    intensity: tuple[float, float] | None = None
    label_voxels: dict[int, int] = field(default_factory=dict)
    issues: list[CheckIssue] = field(default_factory=list)
    warnings: list[CheckIssue] = field(default_factory=list)


@dataclass
class CheckReport:
    """The result of :func:`check_dataset`; ``issues`` lists every problem found."""

    dataset: Dataset
    cases: list[CaseSummary]
    issues: list[CheckIssue]
    warnings: list[CheckIssue] = field(default_factory=list)  # suspicious but usable (an all-background label)

    @property
    def ok(self) -> bool:
        return not self.issues

    def raise_for_issues(self) -> None:
        """Raise DataError (bad input, exit code 2) summarising the issues, if there are any."""
        if self.issues:
            n_cases = len({i.case_id for i in self.issues})
            raise DataError(
                f"{len(self.issues)} problem(s) in {n_cases} case(s) of {self.dataset.root} "
                f"(run `bench data check --data {self.dataset.root}` for the list); first: {self.issues[0]}"
            )

    def format(self) -> str:
        """A human-readable summary: counts, shapes, spacings, intensities, organ volumes, then every issue."""
        ds = self.dataset
        good = [c for c in self.cases if c.shape is not None]
        roles = {r: sum(c.role == r for c in self.cases) for r in ("train", "val", "test")}
        lines = [
            f"data set {ds.name} ({ds.layout}) at {ds.root}",
            f"cases: {roles['train']} training, {roles['val']} validation, {roles['test']} test; "
            f"{len(good)} readable; {len(ds.organs)} organs"
            + (f"; {len(ds.unlabelled)} unlabelled images (not used)" if ds.unlabelled else ""),
            f"organs: {', '.join(ds.organs.values())}",
            *(f"region {name}: labels {', '.join(map(str, values))}" for name, values in ds.regions.items()),
            *ds.notes,
        ]
        if ds.ignore_label is not None:
            lines.append(f"ignore label: {ds.ignore_label} (not an organ; left out of the loss and the scores)")
        if ds.channel_norms is not None:
            lines.append(f"channel normalisation (channel_names): {', '.join(ds.channel_norms)}")
        if good:
            shapes, spacings = np.array([c.shape for c in good]), np.array([c.spacing for c in good])
            rows = [["shape (z,y,x)", *_stats(shapes, "{:.0f}")], ["spacing mm (z,y,x)", *_stats(spacings, "{:.3g}")]]
            # Each case records its lowest and highest intensity; one row per end, over cases.
            for title, values in (
                ("lowest intensity", [c.intensity[0] for c in good]),
                ("highest intensity", [c.intensity[1] for c in good]),
            ):
                rows.append([title, *(f"{f(values):g}" for f in (np.min, np.median, np.max))])
            lines += ["", tabulate(rows, headers=["", "min", "median", "max"])]
            lines += ["", self._organ_table(good)]
        if self.warnings:
            lines += ["", f"{len(self.warnings)} warning(s):", *(f"  WARNING {w}" for w in self.warnings)]
        if self.issues:
            lines += ["", f"{len(self.issues)} problem(s):", *(f"  ERROR {i}" for i in self.issues)]
        else:
            lines += ["", "no problems found"]
        return "\n".join(lines)

    def _organ_table(self, good: list[CaseSummary]) -> str:
        labelled = [c for c in good if c.label_voxels]
        rows = []
        for value, name in self.dataset.organs.items():
            present = [c for c in labelled if c.label_voxels.get(value, 0) > 0]
            voxels = sum(c.label_voxels.get(value, 0) for c in labelled)
            ml = [c.label_voxels[value] * float(np.prod(c.spacing)) / 1000 for c in present]
            rows.append([value, name, voxels, f"{np.mean(ml):.1f}" if ml else "-", f"{len(present)}/{len(labelled)}"])
        return tabulate(rows, headers=["label", "organ", "voxels", "mean mL", "cases with it"])


def check_dataset(
    data: Path | Dataset, labels: Path | None = None, workers: int = 1, progress: bool = False, modality: str = "ct"
) -> CheckReport:
    """Read every case of ``data`` (a path for :func:`load_dataset` or a loaded Dataset) and collect all problems."""
    dataset = data if isinstance(data, Dataset) else load_dataset(Path(data), labels, modality)
    roles = [("train", c) for c in dataset.cases] + [("val", c) for c in dataset.val_cases]
    roles += [("test", c) for c in dataset.test_cases]
    declared = sorted([*dataset.labels, *([dataset.ignore_label] if dataset.ignore_label is not None else [])])
    fn = partial(_check_case, declared=declared)
    summaries = parallel_map(fn, roles, workers, desc="checking", progress=progress)
    issues = [i for s in summaries for i in s.issues]
    if not dataset.cases:
        issues.insert(0, CheckIssue("-", dataset.root, "empty data set: no training cases found"))
    seen: dict[str, int] = {}
    for role, case in roles:
        seen[case.case_id] = seen.get(case.case_id, 0) + 1
        if seen[case.case_id] == 2:
            issues.append(
                CheckIssue(
                    case.case_id,
                    case.images[0] if case.images else Path("-"),
                    f"duplicate case id (also a {role} case); give each case its own id (a CSV's case_id column)",
                )
            )
    return CheckReport(dataset, summaries, issues, [w for s in summaries for w in s.warnings])


def _check_case(role_case: tuple[str, Case], declared: list[int]) -> CaseSummary:
    role, case = role_case
    out = CaseSummary(case.case_id, role)

    def issue(path: Path, message: str) -> None:
        out.issues.append(CheckIssue(case.case_id, path, message))

    if not case.images:
        issue(Path("-"), "no image files listed")
    reference: sitk.Image | None = None
    lows, highs = [], []
    for path in case.images:
        image = _read(path, "image", issue)
        if image is None:
            continue
        if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
            issue(
                path,
                f"expected a 3-D single-component image, got {image.GetDimension()}-D with "
                f"{image.GetNumberOfComponentsPerPixel()} component(s) per voxel",
            )
            continue
        if reference is None:
            reference = image
        else:
            _compare(reference, image, path, "channel", issue)
        arr = sitk.GetArrayViewFromImage(image)
        finite = _finite_check(arr, path, issue)
        if finite.size:
            lows.append(float(finite.min()))
            highs.append(float(finite.max()))
    if reference is not None:
        out.shape, out.spacing = reference.GetSize()[::-1], spacing_zyx(reference)
        out.intensity = (min(lows), max(highs)) if lows else (float("nan"), float("nan"))

    if case.label is None:
        if role == "train":
            issue(case.images[0] if case.images else Path("-"), "no label file given for a training case")
        return out
    label = _read_label(case, issue)
    if label is None:
        return out
    if reference is not None and not _compare(reference, label, case.label, "label", issue):
        return out
    arr = sitk.GetArrayViewFromImage(label)
    if arr.dtype.kind == "f":
        _finite_check(arr, case.label, issue)
        if not np.all(np.isfinite(arr)):
            return out
        if not np.array_equal(arr, np.round(arr)):
            issue(case.label, "label holds non-integer values")
            return out
    values, counts = np.unique(arr.astype(np.int64, copy=False), return_counts=True)
    out.label_voxels = dict(zip(values.tolist(), counts.tolist()))
    undeclared = sorted(set(values.tolist()) - set(declared))
    if undeclared:
        issue(case.label, f"label values {undeclared} are not declared in the organ names (declared: {declared})")
    if role == "train" and values.tolist() == [0]:
        out.warnings.append(CheckIssue(case.case_id, case.label, "training label holds no organ (all background)"))
    return out


def _read_label(case: Case, issue) -> sitk.Image | None:
    """The case's label file, or its structure masks merged (TotalSegmentator), reporting each unusable file."""
    if not case.label_parts:
        return _read(case.label, "label", issue)
    masks = [(value, _read(path, "mask", issue), path) for value, path in case.label_parts]
    if any(image is None for _, image, _ in masks):
        return None
    try:
        return merge_masks(masks)
    except DataError as err:
        issue(case.label, str(err))
        return None


def _read(path: Path, what: str, issue) -> sitk.Image | None:
    if path.is_symlink() and not path.exists():
        issue(path, f"{what} is a broken symbolic link (dangling, or a loop)")
        return None
    if not path.is_file():
        issue(path, f"{what} file missing")
        return None
    try:
        nonfinite = scan_nifti(path)
        image = read_image(path)
    except DataError as err:
        issue(path, str(err).removeprefix(f"{path}: "))
        return None
    if nonfinite:
        issue(path, f"{nonfinite} NaN or inf voxel(s) in the file (SimpleITK reads them as 0)")
    return image


def _compare(ref: sitk.Image, other: sitk.Image, path: Path, what: str, issue) -> bool:
    """Report each geometry difference between ``other`` and the first image; True when there is none."""
    problems = []
    if other.GetSize() != ref.GetSize():
        problems.append(f"size {other.GetSize()} differs from the image's {ref.GetSize()} (x,y,z)")
    else:
        for name, get in (("spacing", "GetSpacing"), ("origin", "GetOrigin"), ("direction", "GetDirection")):
            a, b = np.array(getattr(other, get)()), np.array(getattr(ref, get)())
            if a.shape != b.shape or not np.allclose(a, b, rtol=0, atol=GEOMETRY_ATOL):
                problems.append(f"{name} {_fmt(a)} differs from the image's {_fmt(b)}")
    for p in problems:
        issue(path, f"{what} {p}")
    return not problems


def _finite_check(arr: np.ndarray, path: Path, issue) -> np.ndarray:
    """The finite voxels of ``arr`` (all of them for integer types), reporting NaN/inf voxels."""
    if arr.dtype.kind != "f":
        return arr
    finite = np.isfinite(arr)
    bad = arr.size - int(np.count_nonzero(finite))
    if bad:
        issue(path, f"{bad} NaN or inf voxel(s)")
        return arr[finite]
    return arr


def _fmt(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def _stats(rows: np.ndarray, fmt: str) -> list[str]:
    def join(v: np.ndarray) -> str:
        return "x".join(fmt.format(x) for x in v)

    return [join(rows.min(0)), join(np.median(rows, 0)), join(rows.max(0))]
