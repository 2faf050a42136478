"""The typed run summary: summary.json files keep their bytes through it, and a value of the wrong type is named."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.atomic import atomic_write_json
from bench.errors import BenchError
from bench.run_summary import SUMMARY_KEYS, RunSummary
from bench.store import ResultsStore

RUN_ID = "SegKDSynthAbdomen__lcovnet__kd-ca__t-unet3d__s0__12e8fbfa"
PER_CASE = pd.DataFrame({"case": ["c0", "c1"], "label": [1, 1], "name": ["liver"] * 2, "dice": [0.8, 0.7],
                         "hd95": [3.0, 4.0], "status": ["ok", "ok"]})  # fmt: skip


def todays_summary() -> dict:
    """A summary as the runner built it as a dict literal before RunSummary: every key, in its order, with
    the value types a run produces (numpy numbers from the metrics, NaN where nothing was measured)."""
    return {
        "run_id": RUN_ID, "model": "lcovnet", "kd": "ca", "teacher": "unet3d",
        "teacher_run": "SegKDSynthAbdomen__unet3d__kd-none__s0__12e8fbfa", "seed": 0, "preset": "smoke",
        "preset_hash": "12e8fbfa9d0c", "dataset": "SegKDSynthAbdomen", "patch": [32, 64, 64], "device": "cpu",
        "latency_device": "cpu", "params": 177732, "gmacs": 0.27826944, "uncounted_ops": [],
        "latency_ms_median": 46.21730041503906, "latency_ms_p90": 51.3, "peak_mem_mb": 112.5,
        "latency_cpu": "AMD EPYC 9654 96-Core Processor", "latency_threads": 2, "latency_load_avg": 1.93,
        "latency_cpu_count": 2, "dataset_synthetic": True, "n_train": 16, "n_val": 2, "n_test": 6,
        "base_channels": 8, "whole_volume": [160, 256, 256], "whole_ct_seconds": 41.302,
        "dice_mean": np.float64(0.8123456789012345), "dice_std": np.float64(0.031), "hd95_mean": 6.1,
        "hd95_std": 0.3, "n_cases": 6, "n_scored_cases": 6, "n_missed": 1, "n_false_positive": 0,
        "n_both_empty": 2,
        "per_organ": {"liver": {"label": 1, "dice": 0.93, "dice_std": 0.01, "hd95": 2.5, "hd95_std": float("nan"),
                                "n_scored": 6, "n_missed": 0, "n_false_positive": 0, "n_both_empty": 0}},
        "hd95_definition": "medpy_pooled_p95", "empty_mask_policy": "both_empty_skipped",
        "train_seconds": 151.25, "iterations": 1000, "best_val_dice": 0.84,
        "first_step": {"loss": 1.6104, "seg_loss": 1.6, "kd_loss": 0.0104},
        "numerics": {"cpu_capability": "AVX512", "threads": 2}, "kd_hparams": {"weight": 0.1, "tau": 4.0},
        "model_kwargs": {"base_channels": 8}, "kd_kwargs": {}, "teacher_kwargs": {}, "fold": 0,
        "created": "2026-12-02T12:00:00+00:00", "torch": "2.13.0+cpu",
    }  # fmt: skip


def _written_before(path: Path, summary: dict) -> bytes:
    """``summary`` written as record_run wrote the dict before RunSummary (atomic_write_json's JSON)."""
    atomic_write_json(path, summary)
    return path.read_bytes()


def test_a_summary_written_by_the_dict_literal_reads_back_and_writes_the_same_bytes(tmp_path: Path) -> None:
    before = _written_before(tmp_path / "summary.json", todays_summary())
    summary = RunSummary.read(tmp_path / "summary.json")
    assert tuple(todays_summary()) == SUMMARY_KEYS
    assert summary.to_json().encode() == before
    assert summary.dice_mean == 0.8123456789012345 and summary.per_organ["liver"]["hd95_std"] is None


def test_recording_a_run_through_the_store_writes_the_summary_byte_for_byte(tmp_path: Path) -> None:
    before = _written_before(tmp_path / "before.json", todays_summary())
    store = ResultsStore(tmp_path / "results")
    store.record_run(RUN_ID, RunSummary.read(tmp_path / "before.json"), PER_CASE)
    assert store.paths(RUN_ID).summary.read_bytes() == before
    assert store.summaries() == [RunSummary.read(tmp_path / "before.json")]


def test_a_summary_is_built_with_every_key_named() -> None:
    with pytest.raises(TypeError, match="missing"):
        RunSummary(run_id=RUN_ID, model="lcovnet")  # type: ignore[call-arg]


def test_keys_an_older_summary_lacks_read_as_null_fold_as_zero_and_unknown_keys_are_ignored(tmp_path: Path) -> None:
    older = {k: v for k, v in todays_summary().items() if k not in ("fold", "numerics", "whole_ct_seconds", "run_id")}
    path = tmp_path / RUN_ID / "summary.json"
    _written_before(path, {**older, "from_a_newer_version": 1})
    summary = RunSummary.read(path, run_id=RUN_ID)
    assert (summary.run_id, summary.fold, summary.numerics, summary.whole_ct_seconds) == (RUN_ID, 0, None, None)
    assert "from_a_newer_version" not in summary.to_dict() and summary.model == "lcovnet"


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("dice_mean", "abc", "not a number or null"),
        ("dice_mean", -0.25, "outside [0, 1]"),
        ("best_val_dice", 1.5, "outside [0, 1]"),
        ("hd95_mean", -1.0, "outside [0, inf]"),
        ("seed", "0", "not an integer or null"),
        ("params", True, "not an integer or null"),
        ("dataset_synthetic", 1, "not a boolean or null"),
        ("patch", [32, "64", 64], "not a list or null"),
        ("per_organ", [], "not an object or null"),
        ("fold", None, "not an integer"),
    ],
)
def test_a_value_of_the_wrong_type_or_range_is_refused_naming_the_file_and_the_key(tmp_path, key, value, why):
    path = tmp_path / "summary.json"
    _written_before(path, {**todays_summary(), key: value})
    with pytest.raises(BenchError) as err:
        RunSummary.read(path)
    assert str(err.value) == f"{path}: key {key} holds {value!r}, {why}"


def test_a_summary_that_is_no_json_object_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text("[1, 2]")
    with pytest.raises(BenchError, match=f"^{path}: not a JSON object$"):
        RunSummary.read(path)
    path.write_text('{"run_id": ')
    with pytest.raises(BenchError, match=f"^cannot read {path}: "):
        RunSummary.read(path)


def test_the_store_leaves_out_a_run_whose_summary_holds_a_bad_value_and_names_file_and_key(tmp_path, capsys):
    store = ResultsStore(tmp_path)
    store.record_run(RUN_ID, RunSummary.from_dict(todays_summary()), PER_CASE)
    bad_id = RUN_ID.replace("__s0__", "__s1__")
    store.record_run(bad_id, RunSummary.from_dict({**todays_summary(), "run_id": bad_id, "seed": 1}), PER_CASE)
    path = store.paths(bad_id).summary
    path.write_text(json.dumps({**json.loads(path.read_text()), "dice_mean": "abc"}))
    capsys.readouterr()
    assert [s.run_id for s in ResultsStore(tmp_path).summaries()] == [RUN_ID]
    (warning,) = capsys.readouterr().err.splitlines()
    assert warning.startswith(f"warning: run {bad_id} left out: {path}: key dice_mean holds 'abc'")
    assert set(ResultsStore(tmp_path).per_case().run_id) == {RUN_ID}


def test_record_run_refuses_a_summary_that_would_not_read_back_and_writes_nothing(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    values = RunSummary.from_dict(todays_summary()).to_dict()
    with pytest.raises(BenchError, match="key dice_mean holds 'abc'"):
        store.record_run(RUN_ID, RunSummary(**{**values, "dice_mean": "abc"}), PER_CASE)
    assert not store.paths(RUN_ID).dir.exists() and store.summaries() == []
