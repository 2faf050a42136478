"""Issue 11, case 8: preset values are validated when the preset is loaded, never after training."""

import pytest

from bench.errors import BenchError
from bench.training.config import load_config
from tests.bench.planted import copy_store, run_planted, tiny_run_args


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ('patch=["a","b","c"]', "patch"),
        ("patch=[32.0,32,32]", "patch"),
        ("window=[1]", "window"),
        ("workers=-1", "workers"),
        ("sw_batch_size=0", "sw_batch_size"),
        ("profile_runs=0", "profile_runs"),
        ("base_channels=-4", "base_channels"),
        ("val_cases=-1", "val_cases"),
        ("momentum=5", "momentum"),
        ("grad_clip=-1", "grad_clip"),
        ("iterations=10.0", "iterations"),
        ("folds=0", "folds"),
        ('organs=["liver","liver"]', "organs"),
        ("organs=[1]", "organs"),
        ('organs={SegKDSynthAbdomen=["liver","liver"]}', "organs"),
        ("organs={SegKDSynthAbdomen=1}", "organs"),
        ("organs=3", "organs"),
        ('flip_axes=["x","w"]', "flip_axes"),
        ('flip_axes=["x","x"]', "flip_axes"),
    ],
)
def test_out_of_range_preset_value_is_refused_at_load_naming_the_key(override, key):
    with pytest.raises(BenchError, match=f"preset key {key} "):
        load_config("smoke", [override])


def test_bad_preset_value_stops_bench_run_before_anything_is_written(finished_store, tiny_dataset, tmp_path):
    results = copy_store(finished_store, tmp_path / "res")
    for override, key in (("profile_runs=0", "profile_runs"), ("patch=[32.0,32,32]", "patch")):
        run_planted(tmp_path, results, tiny_run_args(tiny_dataset, results, "--set", override), 2, [key])


def test_unknown_organ_stops_bench_run_before_anything_is_written(finished_store, tiny_dataset, tmp_path):
    results = copy_store(finished_store, tmp_path / "res")
    args = tiny_run_args(tiny_dataset, results, "--set", 'organs=["liver","kidny"]')
    run_planted(tmp_path, results, args, 2, ["organs", "kidny", "SegKDSynthAbdomen", "kidney_left"])


def test_non_utf8_preset_file_is_named(finished_store, tiny_dataset, tmp_path):
    results = copy_store(finished_store, tmp_path / "res")
    preset = tmp_path / "latin1.toml"
    preset.write_bytes('description = "caf\xe9"\n'.encode("latin-1"))
    args = tiny_run_args(tiny_dataset, results)
    args[args.index("smoke")] = str(preset)
    run_planted(tmp_path, results, args, 2, [str(preset), "UTF-8"])


def test_patch_too_small_for_the_pooling_is_one_line_before_training(finished_store, tiny_dataset, tmp_path):
    results = copy_store(finished_store, tmp_path / "res")
    args = tiny_run_args(tiny_dataset, results, "--set", "patch=[16,32,32]")
    run_planted(tmp_path, results, args, 2, ["16x32x32", "lcovnet"])


def test_changing_folds_after_the_splits_file_exists_is_refused(finished_store, tiny_dataset, tmp_path):
    results = copy_store(finished_store, tmp_path / "res")
    (splits,) = (results / "splits").glob("*.json")
    run_planted(
        tmp_path, results, tiny_run_args(tiny_dataset, results, "--set", "folds=3"), 2, [str(splits), "folds=3"]
    )
