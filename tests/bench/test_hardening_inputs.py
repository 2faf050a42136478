"""Issue 26, part 3: every bad input found by the second probe is one line with its exit code, and changes nothing
outside the folder it was meant for (``run_planted`` checks the store, the index and every file beside it)."""

import json
import os
import shutil
import subprocess
import time

import numpy as np
import pytest
import SimpleITK as sitk

from bench.errors import BenchError
from bench.training.config import _INT_LIMITS, LIMITS, load_config
from tests.bench.planted import copy_store, files, mounted, run_planted, tiny_run_args
from tests.bench.runutil import bench_cmd


@pytest.fixture
def data(tiny_dataset, tmp_path):
    return shutil.copytree(tiny_dataset, tmp_path / "data")


@pytest.fixture
def results(finished_store, tmp_path):
    return copy_store(finished_store, tmp_path / "res")


def _run_id(results):
    (run,) = (results / "runs").iterdir()
    return run.name


def _bench(*args, cwd=None):
    return subprocess.run(bench_cmd(*args), capture_output=True, text=True, timeout=600, cwd=cwd)


# -- the training log, the summary, the index -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content",
    [b"\x00\xff\xfe garbage \x81" * 40, b"iteration,loss\nabc,def\n", b"iteration,loss\n1,inf\n2,1e400\n",
     b'iteration,loss\n1,"unclosed\n'],
)  # fmt: skip
def test_a_corrupt_training_log_leaves_its_curve_out_with_a_warning(results, tmp_path, content):
    (results / "runs" / _run_id(results) / "train_log.csv").write_bytes(content)
    proc = _bench("report", "--results", str(results), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    (warning,) = [line for line in proc.stderr.splitlines() if line.startswith("warning: training curve")]
    assert "train_log.csv" in warning
    assert (tmp_path / "out" / "report.md").is_file()


@pytest.mark.parametrize(("key", "literal"), [("params", "1" + "0" * 400), ("gmacs", "Infinity"), ("dice_mean", "NaN")])
def test_a_summary_number_no_run_writes_is_refused_naming_file_and_key(results, tmp_path, key, literal):
    path = results / "runs" / _run_id(results) / "summary.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), key: "planted"}).replace('"planted"', literal))
    proc = _bench("report", "--results", str(results), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]  # no complete run is left
    (warning,) = [line for line in proc.stderr.splitlines() if line.startswith("warning: run")]
    assert str(path) in warning and f"key {key}" in warning


def test_a_corrupt_index_says_that_deleting_it_is_safe_and_it_is(results, tmp_path):
    (results / "bench.sqlite").write_bytes(b"not a database" * 100)
    for extra in ("bench.sqlite-wal", "bench.sqlite-shm"):
        (results / extra).unlink(missing_ok=True)
    run_planted(tmp_path, results, ["report", "--results", str(results), "--out", str(tmp_path / "out")], 2,
                [str(results / "bench.sqlite"), "deleting it is safe", "rebuilds it"])  # fmt: skip
    (results / "bench.sqlite").unlink()
    proc = _bench("report", "--results", str(results), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-3000:]


# -- outputs that cannot be written -----------------------------------------------------------------------------------
def _output_commands(results, data, out):
    run_id = _run_id(results)
    return {
        "synth": ["data", "synth", "--out", str(out / "synthetic"), "--cases", "1", "--size", "16,16,16"],
        "prepare": ["data", "prepare", "--data", str(data), "--out", str(out), "--workers", "1"],
        "predict": ["predict", "--run", run_id, "--results", str(results), "--input", str(data / "imagesTs"),
                    "--output", str(out)],
        "export": ["export", "--run", run_id, "--results", str(results), "--out", str(out)],
        "report": ["report", "--results", str(results), "--out", str(out)],
    }  # fmt: skip


@pytest.mark.parametrize("command", ["synth", "prepare", "predict", "export", "report"])
def test_an_output_that_is_a_file_is_one_line_naming_it(results, data, tmp_path, command):
    target = tmp_path / "mine.txt"
    target.write_text("the user's own file\n")
    out = target / "synthetic" if command == "synth" else target
    args = _output_commands(results, data, target)[command]
    if command == "synth":
        args[3] = str(out)
    run_planted(tmp_path, results, args, 2, [str(target), "not a folder"])
    assert target.read_text() == "the user's own file\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="a read-only bind mount needs root (as root, chmod does not stop writes)")
@pytest.mark.parametrize("command", ["synth", "prepare", "predict", "export", "report"])
def test_a_read_only_output_folder_is_one_line_naming_it(results, data, tmp_path, command):
    source = tmp_path / "ro-source"
    source.mkdir()
    with mounted(tmp_path / "ro", "--bind", str(source)) as ro:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], check=True)
        run_planted(tmp_path, results, _output_commands(results, data, ro)[command], 2, [str(ro)])
    assert list(source.iterdir()) == []


# -- preset numbers, names, nesting, grid size ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("iterations=100000000000000000000", "iterations"),
        ("base_channels=10000000000000000000000", "base_channels"),
        ("spacing=[1e-9, 1, 1]", "spacing"),
        ("spacing=[0.01, 0.8, 0.8]", "spacing"),
        ("spacing=[1000, 1, 1]", "spacing"),
        ("patch=[2048, 32, 32]", "patch"),
        ("batch_size=1000000", "batch_size"),
        ("overlap=0.99", "overlap"),
        ("lr=inf", "lr"),
        ("window=[-1e9, 1e9]", "window"),
        ("folds=1000", "folds"),
    ],
)
def test_an_absurd_preset_number_is_refused_with_the_reason_for_its_bound(override, key):
    with pytest.raises(BenchError, match=f"preset key {key} must be .*\\(.+\\), got") as err:
        load_config("smoke", [override])
    assert "\n" not in str(err.value)


def test_every_bounded_preset_number_states_its_reason_and_the_shipped_presets_keep_within():
    assert set(_INT_LIMITS) <= set(LIMITS)
    for preset in ("smoke", "default", "paper"):
        load_config(preset)


def test_a_huge_iteration_count_stops_bench_run_before_anything_is_written(results, data, tmp_path):
    args = tiny_run_args(data, results, "--set", "iterations=100000000000000000000")
    run_planted(tmp_path, results, args, 2, ["preset key iterations", "10,000,000"])


def test_a_case_id_too_long_for_a_file_name_is_refused_by_check_and_run(results, data, tmp_path):
    rows = ["image,label,case_id,split"]
    for i in range(5):
        rows.append(f"imagesTr/case_{i:04d}_0000.nii.gz,labelsTr/case_{i:04d}.nii.gz,case{i},train")
    rows.append(f"imagesTs/case_0005_0000.nii.gz,labelsTs/case_0005.nii.gz,{'c' * 300},test")
    (data / "cases.csv").write_text("\n".join(rows) + "\n")
    words = [str(data / "cases.csv"), "case id", "longer than 200 bytes"]
    run_planted(tmp_path, results, ["data", "check", "--data", str(data / "cases.csv"), "--workers", "1"], 2, words)
    run_planted(tmp_path, results, tiny_run_args(data / "cases.csv", results), 2, words)


def _deep(levels: int) -> str:
    return "[" * levels + "1" + "]" * levels


@pytest.mark.parametrize("levels", [20, 50_000])  # 50,000: an argument holds at most 128 KiB
@pytest.mark.parametrize("where", ["--set", "--kd", "experiment"])
def test_lists_nested_too_deeply_are_one_line_naming_where(results, data, tmp_path, where, levels):
    base = ["run", "--data", str(data), "--results", str(results), "--dry-run"]
    if where == "--set":
        args, names = [*base, "--models", "lcovnet", "--set", f"patch={_deep(levels)}"], ["patch", "--set"]
    elif where == "--kd":
        args, names = [*base, "--models", "lcovnet", "--kd", f"ca:weight={_deep(levels)}"], ["--kd 'ca:weight=[[["]
    else:
        experiment = tmp_path / "deep.toml"
        experiment.write_text(f'models = ["lcovnet"]\n[overrides]\npatch = {_deep(levels)}\n')
        args, names = [*base, "--experiment", str(experiment)], [str(experiment)]
    proc = run_planted(tmp_path, results, args, 2, [*names, "deeper than 16 levels"])
    assert max(len(line) for line in proc.stderr.splitlines()) < 400


@pytest.mark.parametrize(
    "grid",
    [
        ["--kd", "ca:weight=" + "|".join(str(i / 1000) for i in range(1, 1001)) + ":tau=" +
         "|".join(str(i) for i in range(1, 1001))],
        ["--kd", "ca:weight=" + "|".join(str(i / 100) for i in range(1, 101)), "--seeds",
         ",".join(map(str, range(10_000)))],
    ],
)  # fmt: skip
def test_dry_run_of_a_million_cell_sweep_answers_at_once_with_the_count(results, data, tmp_path, grid):
    args = ["run", "--models", "lcovnet", "--data", str(data), "--results", str(results), "--dry-run", *grid]
    start = time.perf_counter()
    proc = run_planted(tmp_path, results, args, 2, ["at most 10,000"])
    assert time.perf_counter() - start < 2 + 1  # the interpreter's start included
    assert "1,000,000 runs" in proc.stderr or "1,020,000 cells" in proc.stderr  # the teacher and 101 runs a seed


# -- the cache --------------------------------------------------------------------------------------------------------
def _case_folder(results, case="case_0000"):
    (folder,) = (results / "cache").glob(f"{case}-*")
    return folder


def test_a_truncated_cached_array_is_built_again_not_trained_on(results, tiny_dataset):
    image = _case_folder(results) / "image.npy"  # the cache key holds the data files' paths: the store's own data
    whole = image.read_bytes()
    image.write_bytes(whole[: len(whole) // 2])
    proc = _bench(*tiny_run_args(tiny_dataset, results, iterations=3))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "is damaged" in proc.stderr and "building it again" in proc.stderr
    assert (_case_folder(results) / "image.npy").stat().st_size == len(whole)


def test_a_cached_array_replaced_by_another_of_its_size_is_rebuilt_with_force(results, tiny_dataset):
    args = tiny_run_args(tiny_dataset, results, iterations=3)
    image = _case_folder(results) / "image.npy"
    whole = image.read_bytes()
    array = np.load(image)
    np.save(image, np.zeros_like(array))  # same shape, same size, other voxels
    proc = _bench(*args, "--force")
    assert proc.returncode == 0 and "differs from what was written" in proc.stderr, proc.stderr[-3000:]
    assert _case_folder(results).joinpath("image.npy").read_bytes() == whole


# -- deployment inputs ------------------------------------------------------------------------------------------------
def _spec(results, **changes):
    spec = json.loads((results / "runs" / _run_id(results) / "preprocessing.json").read_text())
    return {**spec, **changes}


def test_an_onnx_sidecar_with_a_zero_window_is_one_line(results, data, tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not checked before the sidecar")
    (tmp_path / "model.onnx.json").write_text(json.dumps(_spec(results, patch=[0, 0, 0])))
    args = ["predict", "--onnx", str(model), "--input", str(data / "imagesTs"), "--output", str(tmp_path / "masks")]
    run_planted(tmp_path, results, args, 2, ["--onnx sidecar", "model.onnx.json", "patch must be three sizes"])


def test_weights_of_another_class_count_name_the_first_tensor_that_differs(results, data, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(_spec(results, num_classes=5, labels={str(i): f"o{i}" for i in range(5)})))
    weights = results / "runs" / _run_id(results) / "weights.pt"
    args = ["predict", "--weights", str(weights), "--preprocessing", str(spec), "--input", str(data / "imagesTs"),
            "--output", str(tmp_path / "masks")]  # fmt: skip
    run_planted(tmp_path, results, args, 2, ["does not fit lcovnet", "5 classes", "heads.0.weight has shape"])


def test_nan_voxels_in_a_ct_to_segment_are_refused_like_data_check_does(results, data, tmp_path):
    image = sitk.ReadImage(str(data / "imagesTs" / "case_0005_0000.nii.gz"), sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(image)
    array[3, 4, 5] = np.nan
    planted = sitk.GetImageFromArray(array)
    planted.CopyInformation(image)
    sitk.WriteImage(planted, str(data / "imagesTs" / "case_0005_0000.nii.gz"))
    args = ["predict", "--run", _run_id(results), "--results", str(results), "--input", str(data / "imagesTs"),
            "--output", str(tmp_path / "masks")]  # fmt: skip
    run_planted(tmp_path, results, args, 2, ["case_0005_0000.nii.gz", "1 NaN or inf voxel(s)"])
    assert not (tmp_path / "masks").exists() or list((tmp_path / "masks").iterdir()) == []
    proc = _bench("data", "check", "--data", str(data), "--workers", "1")
    assert proc.returncode == 1 and "NaN or inf" in proc.stdout


def test_a_ct_with_1000_mm_voxels_is_refused_before_resampling_it(data, tmp_path):
    for folder, name in (("imagesTr", "case_0001_0000.nii.gz"), ("labelsTr", "case_0001.nii.gz")):
        image = sitk.ReadImage(str(data / folder / name))
        image.SetSpacing((1000.0, 1000.0, 1000.0))
        sitk.WriteImage(image, str(data / folder / name))
    cache = tmp_path / "cache"
    args = ["data", "prepare", "--data", str(data), "--out", str(cache), "--spacing", "3,1.5,1.5", "--workers", "1"]
    run_planted(tmp_path, cache, args, 2, ["case_0001_0000.nii.gz", "1000x1000x1000 mm", "spacing"])


def test_report_into_a_folder_never_replaces_a_report_of_the_user(results, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("# my own notes\n")
    args = ["report", "--results", str(results), "--out", str(out)]
    run_planted(tmp_path, results, args, 2, [str(out), "report.md was not written by bench report"])
    assert (out / "report.md").read_text() == "# my own notes\n"
    (out / "report.md").unlink()
    assert _bench(*args).returncode == 0
    assert _bench(*args).returncode == 0, "a report replaces its own files"
    (out / "report.md").write_text((out / "report.md").read_text() + "\nmy edit\n")
    before = files(out)
    proc = _bench(*args)
    assert proc.returncode == 2 and "or was edited since" in proc.stderr
    assert files(out) == before


# -- found by the fuzzer (tests/bench/fuzz.py) ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"ct_stats": {"channels": []}}, "ct_stats must be the training set's statistics"),
        ({"ct_stats": {"channels": [1.5]}}, "ct_stats must be"),
        ({"ct_stats": {"channels": [{"mean": 10**400, "std": 1, "p00_5": 0, "p99_5": 1}]}}, "ct_stats must be"),
        ({"patch": [16, 16, 32]}, "does not suit lcovnet"),
        ({"model_kwargs": {"base_channels": "many"}}, "base_channels must be an integer"),
        ({"model_kwargs": {"base_channels": 10**20}}, "base_channels holds a number past"),
        ({"model_kwargs": {"dropout": {"x": 1}}}, "dropout must be a number, got {'x': 1}"),
    ],
)
def test_a_deployment_spec_that_no_run_writes_is_one_line(results, data, tmp_path, changes, words):
    spec = results / "runs" / _run_id(results) / "preprocessing.json"
    spec.write_text(json.dumps(_spec(results, **changes)))
    args = ["predict", "--run", _run_id(results), "--results", str(results), "--input", str(data / "imagesTs"),
            "--output", str(tmp_path / "masks")]  # fmt: skip
    run_planted(tmp_path, results, args, 2, [words])


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--kd", "ms:norm=1979-05-27"], "'1979-05-27' is not a value"),
        (["--models", "lcovnet:dropout={a=1}"], "'{a=1}' is not a value"),
        (["--models", "lcovnet:base_channels=100000000000000000000"], "base_channels holds a number past"),
        (["--set", "model_kwargs={lcovnet={dropout=1979-05-27}}"], "preset key model_kwargs must be"),
    ],
)
def test_an_argument_value_the_syntax_cannot_hold_is_one_line(results, data, tmp_path, args, words):
    base = ["run", "--data", str(data), "--results", str(results), "--dry-run", "--preset", "smoke", "--device", "cpu"]
    models = [] if "--models" in args else ["--models", "lcovnet"]
    run_planted(tmp_path, results, [*base, *models, *args], 2, [words])


def test_an_export_record_nested_too_deeply_is_one_line(results, tmp_path):
    (results / "runs" / _run_id(results) / "export.json").write_text("[" * 50_000 + "]" * 50_000)
    args = ["report", "--results", str(results), "--out", str(tmp_path / "out")]
    run_planted(tmp_path, results, args, 2, ["export.json", "cannot read"])
