"""Preprocessing: exact round trip back to the original geometry, resampling, normalisations, crop, the cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from bench.data import preprocess
from bench.data.layouts import Case
from bench.data.preprocess import PreprocessSettings, load_prepared, prepare_cases, restore_to_original
from bench.errors import BenchError

RAS = (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0)


def _write(path: Path, arr: np.ndarray, spacing_xyz, origin, direction) -> Path:
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing(spacing_xyz)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return path


def _phantom(tmp_path: Path, name: str = "p", direction=RAS, spacing=(0.9, 0.7, 2.0), seed: int = 0) -> Case:
    """Air around a body ellipse holding two organs; RAS direction, anisotropic spacing, non-zero origin."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:20, :40, :44].astype(np.float32)
    body = ((x - 22) / 18) ** 2 + ((y - 20) / 14) ** 2 < 1
    image = np.where(body, 40.0, -1000.0) + rng.normal(0, 10, body.shape)
    label = np.zeros(body.shape, np.uint8)
    label[((x - 15) / 7) ** 2 + ((y - 20) / 6) ** 2 + ((z - 10) / 6) ** 2 < 1] = 1
    label[((x - 29) / 5) ** 2 + ((y - 22) / 5) ** 2 + ((z - 9) / 5) ** 2 < 1] = 2
    image[label == 1] += 80
    image[label == 2] += 140
    origin = (12.5, -30.0, 100.0)
    img = _write(tmp_path / f"{name}_0000.nii.gz", image.astype(np.int16), spacing, origin, direction)
    lab = _write(tmp_path / f"{name}.nii.gz", label, spacing, origin, direction)
    return Case(name, [img], lab)


def _dice(a: np.ndarray, b: np.ndarray, value: int) -> float:
    both = np.count_nonzero((a == value) & (b == value))
    return 2 * both / (np.count_nonzero(a == value) + np.count_nonzero(b == value))


def test_round_trip_with_kept_spacing_restores_label_exactly(tmp_path: Path) -> None:
    case = _phantom(tmp_path)
    (pc,) = prepare_cases([case], PreprocessSettings(crop=True), tmp_path / "cache", progress=False)
    image, label, meta = load_prepared(pc)
    assert image.dtype == np.float32 and image.shape == (1, *label.shape) and label.dtype == np.uint8
    assert meta["direction"] == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))  # reoriented to LPS
    assert meta["spacing"] == pytest.approx((2.0, 0.7, 0.9))
    assert label.shape[1] < 40 and label.shape[2] < 44  # cropped to the body
    restored = restore_to_original(np.asarray(label), meta)
    original = sitk.ReadImage(str(case.label))
    assert restored.GetSize() == original.GetSize()
    assert restored.GetSpacing() == pytest.approx(original.GetSpacing())
    assert restored.GetOrigin() == pytest.approx(original.GetOrigin())
    assert restored.GetDirection() == pytest.approx(original.GetDirection())
    assert np.array_equal(sitk.GetArrayFromImage(restored), sitk.GetArrayFromImage(original))


def test_round_trip_with_resampling_keeps_dice_above_098(tmp_path: Path) -> None:
    z, y, x = np.mgrid[:16, :72, :80].astype(np.float32)
    body = ((x - 40) / 38) ** 2 + ((y - 36) / 34) ** 2 < 1
    label = np.zeros(body.shape, np.uint8)
    label[((x - 28) / 18) ** 2 + ((y - 36) / 20) ** 2 + ((z - 8) / 7) ** 2 < 1] = 1  # liver-sized
    label[((x - 56) / 12) ** 2 + ((y - 34) / 14) ** 2 + ((z - 7) / 6) ** 2 < 1] = 2  # kidney-sized
    image = np.where(body, 40, -1000).astype(np.int16)
    geometry = ((0.8, 0.8, 2.5), (3.0, -5.0, 40.0), RAS)
    image_path = _write(tmp_path / "big_0000.nii.gz", image, *geometry)
    case = Case("big", [image_path], _write(tmp_path / "big.nii.gz", label, *geometry))
    settings = PreprocessSettings(target_spacing=(2.0, 1.0, 1.0))
    (pc,) = prepare_cases([case], settings, tmp_path / "cache", progress=False)
    _, label_pp, meta = load_prepared(pc)
    assert meta["spacing"] == [2.0, 1.0, 1.0]
    assert meta["original_spacing"] == pytest.approx((2.5, 0.8, 0.8))
    assert label_pp.shape == (20, 54, 60)  # body box 16x67x75 voxels, resampled by 2.5/2 and 0.8/1
    restored = sitk.GetArrayFromImage(restore_to_original(np.asarray(label_pp), meta))
    assert restored.shape == label.shape
    assert _dice(restored, label, 1) >= 0.98 and _dice(restored, label, 2) >= 0.96


def test_reorientation_flips_arrays_into_lps(tmp_path: Path) -> None:
    lps = _phantom(tmp_path, "lps", direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    (pc,) = prepare_cases([lps], PreprocessSettings(crop=False, normalization="none"), tmp_path / "c1", progress=False)
    _, label_lps, _ = load_prepared(pc)
    ras = _phantom(tmp_path, "ras", direction=RAS)
    (pc,) = prepare_cases([ras], PreprocessSettings(crop=False, normalization="none"), tmp_path / "c2", progress=False)
    _, label_ras, _ = load_prepared(pc)
    assert np.array_equal(label_ras, label_lps[:, ::-1, ::-1])


def test_ct_normalization_uses_training_foreground_percentiles(tmp_path: Path) -> None:
    cases = [_phantom(tmp_path, f"p{i}", seed=i) for i in range(2)]
    prepared = prepare_cases(cases, PreprocessSettings(), tmp_path / "cache", fit_cases=cases[:1], progress=False)
    image, _, meta = load_prepared(prepared[1])
    stats = meta["ct_stats"]["channels"][0]
    fg = sitk.GetArrayFromImage(sitk.ReadImage(str(cases[0].images[0])))[
        sitk.GetArrayFromImage(sitk.ReadImage(str(cases[0].label))) > 0
    ]
    assert stats["mean"] == pytest.approx(fg.mean()) and stats["std"] == pytest.approx(fg.std())
    assert stats["p00_5"] == pytest.approx(np.percentile(fg, 0.5))
    assert image.min() == pytest.approx((stats["p00_5"] - stats["mean"]) / stats["std"], rel=1e-5)
    assert image.max() == pytest.approx((stats["p99_5"] - stats["mean"]) / stats["std"], rel=1e-5)


def test_zscore_and_window_normalizations(tmp_path: Path) -> None:
    case = _phantom(tmp_path)
    (z,) = prepare_cases([case], PreprocessSettings(normalization="zscore"), tmp_path / "z", progress=False)
    image = load_prepared(z)[0]
    assert float(image.mean()) == pytest.approx(0, abs=1e-4) and float(image.std()) == pytest.approx(1, abs=1e-3)
    settings = PreprocessSettings(normalization="window", window=(-175, 250))
    (w,) = prepare_cases([case], settings, tmp_path / "w", progress=False)
    image = load_prepared(w)[0]
    assert image.min() == 0.0 and 0.5 < image.max() <= 1.0
    with pytest.raises(BenchError, match="low < high"):
        PreprocessSettings(normalization="window", window=(250, -175))
    with pytest.raises(BenchError, match="normalization must be one of"):
        PreprocessSettings(normalization="minmax")


def test_crop_keeps_every_labelled_voxel_even_outside_the_body(tmp_path: Path) -> None:
    case = _phantom(tmp_path)
    label = sitk.ReadImage(str(case.label))
    arr = sitk.GetArrayFromImage(label)
    arr[0, 0, 0] = 2  # a labelled voxel in the air corner
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(label)
    sitk.WriteImage(out, str(case.label))
    (pc,) = prepare_cases([case], PreprocessSettings(), tmp_path / "cache", progress=False)
    _, label_pp, meta = load_prepared(pc)
    assert int(np.count_nonzero(label_pp == 2)) == int(np.count_nonzero(arr == 2))
    assert meta["crop_bbox_zyx"][0] == [0, 20]


def test_keep_labels_turns_the_other_organs_into_background_and_keys_the_cache(tmp_path: Path) -> None:
    case = _phantom(tmp_path)
    (every,) = prepare_cases([case], PreprocessSettings(), tmp_path / "cache", progress=False)
    (kept,) = prepare_cases([case], PreprocessSettings(keep_labels=(2,)), tmp_path / "cache", progress=False)
    assert kept.label_npy.parent != every.label_npy.parent
    _, label_all, _ = load_prepared(every)
    _, label_kept, meta = load_prepared(kept)
    assert np.count_nonzero(label_all == 1) > 0
    assert np.array_equal(label_kept, np.where(label_all == 2, 2, 0))
    assert meta["labels_present"] == [0, 2] and meta["settings"]["keep_labels"] == [2]
    with pytest.raises(BenchError, match=r"must lie in 1\.\.255"):
        PreprocessSettings(keep_labels=(0, 1))


def test_cache_is_reused_and_invalidated_by_settings_or_changed_files(tmp_path: Path, monkeypatch) -> None:
    case = _phantom(tmp_path)
    first = prepare_cases([case], PreprocessSettings(), tmp_path / "cache", progress=False)
    calls = []
    real = preprocess._prepare_one
    monkeypatch.setattr(preprocess, "_prepare_one", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert prepare_cases([case], PreprocessSettings(), tmp_path / "cache", progress=False) == first
    assert calls == []
    other = prepare_cases([case], PreprocessSettings(target_spacing=(2, 1, 1)), tmp_path / "cache", progress=False)
    assert other[0].image_npy.parent != first[0].image_npy.parent and len(calls) == 1
    st = case.images[0].stat()
    os.utime(case.images[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = prepare_cases([case], PreprocessSettings(), tmp_path / "cache", progress=False)
    assert again[0].image_npy.parent != first[0].image_npy.parent and len(calls) == 2
    assert not list((tmp_path / "cache").glob(".*tmp*"))


def test_worker_processes_give_the_same_arrays(tmp_path: Path) -> None:
    cases = [_phantom(tmp_path, f"p{i}", seed=i) for i in range(2)]
    settings = PreprocessSettings(target_spacing=(2.0, 1.4, 1.4))
    serial = prepare_cases(cases, settings, tmp_path / "a", workers=1, progress=False)
    parallel = prepare_cases(cases, settings, tmp_path / "b", workers=2, progress=False)
    for s, p in zip(serial, parallel):
        assert np.array_equal(np.load(s.image_npy), np.load(p.image_npy))
        assert np.array_equal(np.load(s.label_npy), np.load(p.label_npy))
        assert json.loads(s.meta_json.read_text())["shape"] == json.loads(p.meta_json.read_text())["shape"]


def test_restore_rejects_a_prediction_of_the_wrong_shape(tmp_path: Path) -> None:
    (pc,) = prepare_cases([_phantom(tmp_path)], PreprocessSettings(), tmp_path / "cache", progress=False)
    meta = load_prepared(pc)[2]
    with pytest.raises(BenchError, match="does not match the preprocessed shape"):
        restore_to_original(np.zeros((3, 3, 3), np.uint8), meta)
