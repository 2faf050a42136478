"""``check_dataset`` / ``bench data check``: every class of bad input is reported, with case and file, all at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from bench.data.synth import generate_dataset
from bench.data.validate import check_dataset
from bench.errors import DataError

SIZE = (12, 24, 24)


def _set(root: Path, cases: int = 3) -> Path:
    return generate_dataset(root, cases=cases, test_cases=1, size=SIZE, progress=False)


def _label(root: Path, cid: str) -> Path:
    return root / "labelsTr" / f"{cid}.nii.gz"


def _image(root: Path, cid: str) -> Path:
    return root / "imagesTr" / f"{cid}_0000.nii.gz"


def _rewrite(path: Path, change) -> None:
    image = sitk.ReadImage(str(path))
    out = change(image)
    sitk.WriteImage(out if out is not None else image, str(path))


def _messages(report) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for issue in report.issues:
        out.setdefault(issue.case_id, []).append(f"{issue.file.name}: {issue.message}")
    return out


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> Path:
    """Ten cases, each broken in a different way (case_0000 stays clean)."""
    root = _set(tmp_path_factory.mktemp("broken") / "set", cases=10)
    blob = _image(root, "case_0001").read_bytes()
    _image(root, "case_0001").write_bytes(blob[: len(blob) // 2])  # truncated gzip
    _label(root, "case_0002").write_bytes(b"not an image at all")  # unreadable
    _label(root, "case_0003").unlink()  # missing label

    def crop(im):
        return im[:, :, 1:]

    _rewrite(_label(root, "case_0004"), crop)  # size mismatch
    _rewrite(_label(root, "case_0005"), lambda im: im.SetSpacing((0.8, 0.8, 3.0)))
    _rewrite(_label(root, "case_0006"), lambda im: im.SetOrigin((5.0, 0.0, 0.0)))
    _rewrite(_label(root, "case_0007"), lambda im: im.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1)))

    def undeclared(im):
        arr = sitk.GetArrayFromImage(im)
        arr[0, 0, :3] = [11, 12, 42]
        out = sitk.GetImageFromArray(arr)
        out.CopyInformation(im)
        return out

    _rewrite(_label(root, "case_0008"), undeclared)

    def nan(im):
        arr = sitk.GetArrayFromImage(im).astype(np.float32)
        arr[1, 2, 3], arr[2, 2, 2] = np.nan, np.inf
        out = sitk.GetImageFromArray(arr)
        out.CopyInformation(im)
        return out

    _rewrite(_image(root, "case_0009"), nan)
    return root


def test_every_bad_case_is_reported_with_its_file(broken: Path) -> None:
    report = check_dataset(broken)
    msgs = _messages(report)
    assert not report.ok
    assert "case_0000" not in msgs
    expected = {
        "case_0001": "case_0001_0000.nii.gz: truncated: the compressed data ends early",
        "case_0002": "case_0002.nii.gz: unreadable: not gzip-compressed",
        "case_0003": "case_0003.nii.gz: label file missing",
        "case_0004": "case_0004.nii.gz: label size (24, 24, 11) differs from the image's (24, 24, 12) (x,y,z)",
        "case_0005": "case_0005.nii.gz: label spacing (0.8, 0.8, 3) differs from the image's (0.8, 0.8, 2.5)",
        "case_0006": "case_0006.nii.gz: label origin (5, 0, 0) differs",
        "case_0007": "case_0007.nii.gz: label direction (-1, 0, 0, 0, 1, 0, 0, 0, 1) differs",
        "case_0008": "case_0008.nii.gz: label values [11, 12, 42] are not declared in the organ names",
        "case_0009": "case_0009_0000.nii.gz: 2 NaN or inf voxel(s)",
    }
    for cid, text in expected.items():
        assert any(m.startswith(text) for m in msgs.get(cid, [])), (cid, msgs.get(cid))
    assert all(str(broken) in str(i.file) for i in report.issues)
    with pytest.raises(DataError, match=r"problem\(s\) in 9 case\(s\)"):
        report.raise_for_issues()


def test_clean_set_passes_with_a_summary(tmp_path: Path) -> None:
    report = check_dataset(_set(tmp_path / "ok"))
    assert report.ok
    text = report.format()
    assert "3 training, 0 validation, 1 test" in text and "no problems found" in text
    assert "12x24x24" in text and "2.5x0.8x0.8" in text
    liver = next(line for line in text.splitlines() if " liver " in line)
    assert liver.split()[-1] == "4/4"
    assert sum(c.label_voxels[1] for c in report.cases) == int(liver.split()[2])


def test_summary_median_column_holds_the_median_over_cases(tmp_path: Path) -> None:
    report = check_dataset(_set(tmp_path / "ok"))
    lows = sorted(c.intensity[0] for c in report.cases)
    row = next(line for line in report.format().splitlines() if line.startswith("lowest intensity")).split()
    assert [float(v) for v in row[2:]] == pytest.approx([lows[0], float(np.median(lows)), lows[-1]], rel=1e-5)


def test_empty_dataset_is_an_error(tmp_path: Path) -> None:
    root = _set(tmp_path / "empty")
    for p in [*(root / "imagesTr").iterdir(), *(root / "labelsTr").iterdir()]:
        p.unlink()
    report = check_dataset(root)
    assert str(report.issues[0]).endswith("empty data set: no training cases found")


def test_checking_in_worker_processes_finds_the_same_issues(broken: Path) -> None:
    assert check_dataset(broken, workers=2).issues == check_dataset(broken).issues


def test_cli_check_lists_all_errors_and_exits_1(broken: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "data", "check", "--data", str(broken), "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    errors = [line for line in proc.stdout.splitlines() if line.strip().startswith("ERROR ")]
    assert len(errors) >= 9
    assert any("case_0003" in e and "labelsTr/case_0003.nii.gz: label file missing" in e for e in errors)
    assert any("case_0001" in e and "truncated" in e for e in errors)
    assert proc.stderr.strip().splitlines()[-1].startswith("bench data: error: ")
    assert "Traceback" not in proc.stderr


def test_cli_check_on_clean_set_exits_0(tmp_path: Path) -> None:
    root = _set(tmp_path / "ok")
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "data", "check", "--data", str(root), "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "no problems found" in proc.stdout and "inferior_vena_cava" in proc.stdout
