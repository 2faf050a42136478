"""Issue 11, cases 2, 3, 5, 6 and 7: names that would leave the results folder, files that would score a wrong Dice,
cases that would silently disappear, label values and JSON types that broke `bench run` late."""

import gzip
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from tests.bench.planted import copy_store, run_planted, tiny_run_args


@pytest.fixture
def data(tiny_dataset, tmp_path):
    return shutil.copytree(tiny_dataset, tmp_path / "data")


def _edit_json(data, **changes):
    meta = json.loads((data / "dataset.json").read_text())
    meta.update(changes)
    (data / "dataset.json").write_text(json.dumps(meta))


def _check_args(data):
    return ["data", "check", "--data", str(data), "--workers", "1"]


# -- 2: path traversal ------------------------------------------------------------------------------------------------
def test_dataset_name_climbing_out_of_the_results_folder_is_refused(finished_store, data, tmp_path):
    results = copy_store(finished_store, tmp_path / "res")
    _edit_json(data, name="../../../x")
    run_planted(tmp_path, results, tiny_run_args(data, results), 2, [str(data / "dataset.json"), "'../../../x'"])
    assert not (tmp_path / "x.json").exists() and not list(tmp_path.parent.glob("x*"))


def test_csv_case_id_climbing_out_with_save_predictions_is_refused(finished_store, data, tmp_path):
    results = copy_store(finished_store, tmp_path / "res")
    rows = ["image,label,case_id,split"]
    for i in range(5):
        rows.append(f"imagesTr/case_{i:04d}_0000.nii.gz,labelsTr/case_{i:04d}.nii.gz,case{i},train")
    rows.append("imagesTs/case_0005_0000.nii.gz,labelsTs/case_0005.nii.gz,../../../../x,test")
    (data / "cases.csv").write_text("\n".join(rows) + "\n")
    args = tiny_run_args(data / "cases.csv", results, "--save-predictions")
    run_planted(tmp_path, results, args, 2, [str(data / "cases.csv"), "case id '../../../../x'"])


# -- 3: files that would score a wrong Dice ---------------------------------------------------------------------------
def _masks(tmp_path, ending, dtype=np.uint8):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    mask = np.zeros((20, 24, 24), dtype)
    mask[4:14, 5:15, 6:16] = 1
    mask[10:18, 14:22, 2:9] = 2
    for folder in (pred, gt):
        sitk.WriteImage(sitk.GetImageFromArray(mask), str(folder / f"case_a{ending}"))
    return pred, gt


@pytest.mark.parametrize("ending", [".nii.gz", ".nii"])
def test_evaluate_refuses_a_truncated_prediction(tmp_path, ending):
    pred, gt = _masks(tmp_path, ending)
    path = pred / f"case_a{ending}"
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    args = ["evaluate", "--pred", str(pred), "--gt", str(gt), "--out", str(tmp_path / "out" / "eval.csv")]
    run_planted(tmp_path, tmp_path / "out", args, 2, [str(path), "truncated"])
    assert not (tmp_path / "out").exists()


def test_evaluate_refuses_a_float_mask_with_nan(tmp_path):
    pred, gt = _masks(tmp_path, ".nii.gz", np.float32)
    path = pred / "case_a.nii.gz"
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    array[0, 0, 0] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    args = ["evaluate", "--pred", str(pred), "--gt", str(gt), "--out", str(tmp_path / "out" / "eval.csv")]
    run_planted(tmp_path, tmp_path / "out", args, 2, [str(path), "NaN"])


def test_evaluate_names_a_ground_truth_that_is_a_symlink_loop(tmp_path):
    pred, gt = _masks(tmp_path, ".nii.gz")
    shutil.copy(pred / "case_a.nii.gz", pred / "case_b.nii.gz")
    (gt / "case_b.nii.gz").symlink_to(gt / "case_b.nii.gz")
    args = ["evaluate", "--pred", str(pred), "--gt", str(gt)]
    run_planted(tmp_path, tmp_path / "out", args, 2, [str(gt / "case_b.nii.gz"), "symbolic link"])


def test_bench_run_refuses_a_truncated_training_image(finished_store, data, tmp_path):
    results = copy_store(finished_store, tmp_path / "res")
    path = data / "imagesTr" / "case_0001_0000.nii.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: int(len(raw) * 0.6)]))
    run_planted(tmp_path, results, tiny_run_args(data, results), 2, [str(path), "truncated"])


# -- 5: cases that silently disappeared -------------------------------------------------------------------------------
def _loop(data):
    path = data / "imagesTr" / "case_0001_0000.nii.gz"
    path.unlink()
    path.symlink_to(path)
    return path


def _orphan(data):
    path = data / "imagesTr" / "case_0002_0000.nii.gz"
    path.unlink()
    return path


@pytest.mark.parametrize("plant", [_loop, _orphan])
def test_image_that_is_a_symlink_loop_or_deleted_is_named(finished_store, data, tmp_path, plant):
    path = plant(data)
    proc = run_planted(tmp_path, tmp_path / "none", _check_args(data), 1, [str(data)])
    assert str(path) in proc.stdout and "no problems found" not in proc.stdout
    results = copy_store(finished_store, tmp_path / "res")
    run_planted(tmp_path, results, tiny_run_args(data, results), 2, [str(path)])


# -- 6: label values --------------------------------------------------------------------------------------------------
def test_label_value_above_255_is_refused_by_check_and_run(finished_store, data, tmp_path):
    meta = json.loads((data / "dataset.json").read_text())
    _edit_json(data, labels={**meta["labels"], "huge": 300})
    run_planted(tmp_path, tmp_path / "none", _check_args(data), 2, [str(data / "dataset.json"), "'huge'", "300"])
    results = copy_store(finished_store, tmp_path / "res")
    run_planted(tmp_path, results, tiny_run_args(data, results), 2, [str(data / "dataset.json"), "'huge'"])


def test_all_background_training_label_is_a_warning(data, tmp_path):
    path = data / "labelsTr" / "case_0003.nii.gz"
    image = sitk.ReadImage(str(path))
    empty = sitk.GetImageFromArray(np.zeros_like(sitk.GetArrayFromImage(image)))
    empty.CopyInformation(image)
    sitk.WriteImage(empty, str(path))
    from tests.bench.runutil import bench_cmd

    proc = __import__("subprocess").run(bench_cmd(*_check_args(data)), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"WARNING case_0003: {path}: training label holds no organ" in proc.stdout


# -- 7: wrong JSON types ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"file_ending": 5}, "'file_ending'"),
        ({"dataset": {"case": "x"}}, "'dataset' entry 'case'"),
        ({"training": [{"image": 5, "label": "labelsTr/case_0000.nii.gz"}]}, "'image'"),
        ({"channel_names": ["CT"]}, "'channel_names'"),
    ],
)
def test_wrong_json_types_in_dataset_json_name_the_key(finished_store, data, tmp_path, changes, key):
    _edit_json(data, **changes)
    where = str(data / "dataset.json")
    run_planted(tmp_path, tmp_path / "none", _check_args(data), 2, [where, key])
    results = copy_store(finished_store, tmp_path / "res")
    run_planted(tmp_path, results, tiny_run_args(data, results), 2, [where, key])
