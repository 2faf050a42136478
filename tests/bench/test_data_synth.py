"""Synthetic abdominal CT: determinism, the written nnU-Net layout, anatomy and HU ranges, the default set."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from bench.data import synth
from bench.data.phantom import LABEL, ORGANS
from bench.errors import BenchError
from bench.list_args import parse_float_list

TINY = (24, 48, 48)


def _read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


@pytest.fixture(scope="module")
def cases() -> list[tuple[np.ndarray, np.ndarray]]:
    return [synth.synth_case(0, i, (32, 64, 64)) for i in range(6)]


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path: Path) -> None:
    a = synth.generate_dataset(tmp_path / "a", cases=2, test_cases=1, seed=7, size=TINY, progress=False)
    b = synth.generate_dataset(tmp_path / "b", cases=2, test_cases=1, seed=7, size=TINY, progress=False)
    c = synth.generate_dataset(tmp_path / "c", cases=2, test_cases=1, seed=8, size=TINY, progress=False)
    for rel in ("imagesTr/case_0001_0000.nii.gz", "labelsTr/case_0001.nii.gz", "imagesTs/case_0002_0000.nii.gz"):
        assert np.array_equal(_read(a / rel), _read(b / rel))
    assert not np.array_equal(_read(a / "imagesTr/case_0000_0000.nii.gz"), _read(c / "imagesTr/case_0000_0000.nii.gz"))


def test_written_set_has_nnunet_layout_and_keeps_anisotropic_spacing(tmp_path: Path) -> None:
    root = synth.generate_dataset(tmp_path / "s", cases=3, test_cases=1, size=TINY, spacing=(2.5, 0.8, 0.8))
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT"}
    assert meta["file_ending"] == ".nii.gz"
    assert meta["numTraining"] == 3
    assert meta["labels"] == {"background": 0, **{n: v for v, n in ORGANS.items()}}
    assert sorted(p.name for p in (root / "imagesTr").iterdir()) == [f"case_000{i}_0000.nii.gz" for i in range(3)]
    assert sorted(p.name for p in (root / "labelsTs").iterdir()) == ["case_0003.nii.gz"]
    image = sitk.ReadImage(str(root / "imagesTr/case_0000_0000.nii.gz"))
    label = sitk.ReadImage(str(root / "labelsTr/case_0000.nii.gz"))
    assert image.GetSize() == (48, 48, 24)
    assert image.GetSpacing() == pytest.approx((0.8, 0.8, 2.5))
    assert label.GetSpacing() == image.GetSpacing() and label.GetOrigin() == image.GetOrigin()
    assert image.GetPixelID() == sitk.sitkInt16 and label.GetPixelID() == sitk.sitkUInt8
    assert not list(tmp_path.glob(".s.tmp-*"))


def test_every_organ_is_present_in_most_cases_and_thin_ones_stay_thin(cases) -> None:
    for value, name in ORGANS.items():
        present = sum(int(np.count_nonzero(lab == value)) > 0 for _, lab in cases)
        assert present >= 5, f"{name} present in only {present}/6 cases"
    liver = np.mean([np.count_nonzero(lab == LABEL["liver"]) for _, lab in cases])
    for small in ("gallbladder", "pancreas", "aorta", "inferior_vena_cava"):
        assert np.mean([np.count_nonzero(lab == LABEL[small]) for _, lab in cases]) < liver / 10


def test_organ_shapes_and_positions_vary_between_cases(cases) -> None:
    for name in ("liver", "spleen", "kidney_left", "stomach", "bladder"):
        volumes = [np.count_nonzero(lab == LABEL[name]) for _, lab in cases]
        centres = np.array([ndimage.center_of_mass(lab == LABEL[name]) for _, lab in cases])
        assert np.std(volumes) / np.mean(volumes) > 0.05, name
        assert centres.std(0).max() > 0.5, name


def test_neighbouring_organs_touch(cases) -> None:
    pairs = [("gallbladder", "liver"), ("kidney_right", "liver"), ("pancreas", "spleen")]
    for a, b in pairs:
        touching = sum(
            np.any(ndimage.binary_dilation(lab == LABEL[a], iterations=2) & (lab == LABEL[b])) for _, lab in cases
        )
        assert touching >= 4, f"{a} touches {b} in only {touching}/6 cases"


def test_intensities_are_realistic_hounsfield_units(cases) -> None:
    ranges = {
        "liver": (70, 140),
        "spleen": (80, 150),
        "kidney_left": (100, 210),
        "pancreas": (60, 130),
        "gallbladder": (-10, 45),
        "bladder": (-10, 40),
        "aorta": (120, 240),
    }
    for image, lab in cases:
        assert image.dtype == np.int16
        assert np.median(image[:, :2, :2]) < -900  # air outside the body
        assert np.count_nonzero(image > 300) > 50  # bone
        body = ndimage.binary_erosion(image > -500, iterations=1)
        assert np.count_nonzero((image[body] > -150) & (image[body] < -50)) > 0.05 * body.sum()  # fat
        for name, (lo, hi) in ranges.items():
            core = ndimage.binary_erosion(lab == LABEL[name])  # away from partial-volume edges
            median = float(np.median(image[core]))
            assert lo <= median <= hi, f"{name} median {median} HU outside {lo}..{hi}"
        assert 5 < np.std(image[lab == LABEL["liver"]]) < 40  # noise and texture, not flat


def test_ensure_default_dataset_generates_once_into_the_env_dir(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "cache" / "synthetic-v1"
    monkeypatch.setenv(synth.DATA_DIR_ENV, str(target))
    calls = []
    real = partial(synth.generate_dataset, cases=2, test_cases=0, size=(16, 32, 32), progress=False)
    monkeypatch.setattr(synth, "generate_dataset", lambda out: calls.append(out) or real(out))
    assert synth.ensure_default_dataset() == target
    assert synth.ensure_default_dataset() == target
    assert len(calls) == 1
    assert (target / "dataset.json").is_file() and len(list((target / "imagesTr").iterdir())) == 2


def test_killed_generation_leaves_no_half_written_set(tmp_path: Path, monkeypatch) -> None:
    def crash(seed, index, size):
        if index == 1:
            raise KeyboardInterrupt
        return real(seed, index, size)

    real = synth.synth_case
    monkeypatch.setattr(synth, "synth_case", crash)
    with pytest.raises(KeyboardInterrupt):
        synth.generate_dataset(tmp_path / "set", cases=3, size=(16, 32, 32), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_generate_refuses_a_non_empty_out_dir_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "s"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(BenchError, match="exists and is not empty"):
        synth.generate_dataset(out, cases=1, size=(16, 32, 32), progress=False)
    synth.generate_dataset(out, cases=1, size=(16, 32, 32), progress=False, overwrite=True)
    assert not (out / "notes.txt").exists() and (out / "dataset.json").is_file()


def test_cli_synth_writes_set_and_preview_png(tmp_path: Path) -> None:
    out, png = tmp_path / "s", tmp_path / "preview.png"
    cmd = [sys.executable, "-m", "bench", "data", "synth", "--out", str(out), "--cases", "2", "--size", "16,40,40"]
    proc = subprocess.run([*cmd, "--preview", str(png)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (out / "labelsTr" / "case_0001.nii.gz").is_file()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2
    assert again.stderr.startswith("bench data: error: --out") and "Traceback" not in again.stderr


def test_spacing_and_window_arguments_parse_or_name_the_option() -> None:
    assert parse_float_list("2.5,0.8,0.8", "--spacing", 3) == [2.5, 0.8, 0.8]
    assert parse_float_list("-175,250", "--window", 2, positive=False) == [-175.0, 250.0]
    with pytest.raises(BenchError, match="--spacing needs 3 comma-separated numbers"):
        parse_float_list("2.5,0.8", "--spacing", 3)
    with pytest.raises(BenchError, match="--spacing values must be positive"):
        parse_float_list("2.5,0,0.8", "--spacing", 3)
    with pytest.raises(BenchError, match="--spacing takes comma-separated numbers"):
        parse_float_list("2.5,a,0.8", "--spacing", 3)
