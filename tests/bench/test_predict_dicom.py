"""``bench predict --input`` on DICOM series folders: a real CT series (tests/data, TotalSegmentator's example, Apache
2.0) segmented into a NIfTI mask in the series' own geometry, and the largest CT series chosen from a mixed folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from bench.data.dicom import series_files
from bench.store import ResultsStore
from tests.bench.runutil import bench_cmd

REAL_SERIES = Path(__file__).resolve().parents[1] / "data" / "totalsegmentator_ct_dicom"


def _series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def test_predict_on_a_real_dicom_series_writes_the_mask_in_the_series_geometry(finished_store, tmp_path: Path) -> None:
    results = finished_store
    run_id = ResultsStore(results).summaries()[0].run_id
    proc = subprocess.run(
        bench_cmd("predict", "--run", run_id, "--results", str(results), "--input", str(REAL_SERIES),
                  "--output", str(tmp_path)),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr  # GDCM's own warnings stay quiet
    series = _series(REAL_SERIES)
    assert series.GetSize() == (512, 512, 3) and sitk.GetArrayViewFromImage(series).min() <= -1000  # real HU
    mask = sitk.ReadImage(str(tmp_path / f"{REAL_SERIES.name}.nii.gz"))
    assert mask.GetSize() == series.GetSize()
    np.testing.assert_allclose(mask.GetSpacing(), series.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(mask.GetOrigin(), series.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(mask.GetDirection(), series.GetDirection(), atol=1e-6)


def _write_series(image: sitk.Image, folder: Path, uid: str, modality: str) -> None:
    """``image`` as a DICOM series (one file per slice) with the tags SimpleITK's series reader needs."""
    folder.mkdir(parents=True, exist_ok=True)
    d = image.GetDirection()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z in range(image.GetDepth()):
        piece = image[:, :, z]
        tags = {
            "0008|0060": modality,
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
            "0020|000e": uid,
            "0008|0018": f"{uid}.{z + 1}",
            "0020|0013": str(z + 1),
            "0020|0037": "\\".join(f"{v:.6f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7])),
            "0020|0032": "\\".join(f"{v:.4f}" for v in image.TransformIndexToPhysicalPoint((0, 0, z))),
        }
        for key, value in tags.items():
            piece.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"{uid}.{z + 1}.dcm"))
        writer.Execute(piece)


def test_a_folder_of_several_series_is_read_as_its_largest_ct_series(tmp_path: Path) -> None:
    volume = sitk.GetImageFromArray(np.arange(4 * 6 * 5, dtype=np.int16).reshape(4, 6, 5))
    volume.SetSpacing((0.8, 0.8, 2.5))
    _write_series(volume, tmp_path, "1.2.826.0.1.3680043.2.1125.10", "CT")
    _write_series(volume[:, :, :2], tmp_path, "1.2.826.0.1.3680043.2.1125.11", "CT")
    _write_series(sitk.Tile([volume, volume], (1, 1, 2)), tmp_path, "1.2.826.0.1.3680043.2.1125.12", "MR")
    chosen = series_files(tmp_path)
    assert [Path(f).name for f in chosen] == [f"1.2.826.0.1.3680043.2.1125.10.{z}.dcm" for z in (1, 2, 3, 4)]
