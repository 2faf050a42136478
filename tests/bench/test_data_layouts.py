"""Data set layouts (nnU-Net v2, MSD, WORD, CSV), organ names, and seeded splits written to splits.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from bench.data.layouts import WORD_LABELS, Case, Dataset, load_dataset, parse_labels_file
from bench.data.splits import split_cases
from bench.data.synth import generate_dataset
from bench.errors import BenchError


def _nifti(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 5, 6), value, np.int16)), str(path))
    return path


def _dataset(n_cases: int, n_test: int = 0) -> Dataset:
    def case(i: int) -> Case:
        return Case(f"c{i:02d}", [Path(f"/x/c{i:02d}_0000.nii.gz")], Path(f"/x/c{i:02d}.nii.gz"))

    return Dataset(
        "toy",
        Path("/x"),
        {0: "background", 1: "a"},
        [case(i) for i in range(n_cases)],
        [case(100 + i) for i in range(n_test)],
    )


def test_nnunet_layout_loads_cases_channels_and_test_split(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "Dataset001_Synth", cases=3, test_cases=1, size=(16, 32, 32), progress=False)
    ds = load_dataset(root)
    assert ds.layout == "nnunet" and ds.name == "SegKDSynthAbdomen"
    assert [c.case_id for c in ds.cases] == ["case_0000", "case_0001", "case_0002"]
    assert ds.cases[1].images == [root / "imagesTr" / "case_0001_0000.nii.gz"]
    assert ds.cases[1].label == root / "labelsTr" / "case_0001.nii.gz"
    assert [(c.case_id, c.label) for c in ds.test_cases] == [("case_0003", root / "labelsTs" / "case_0003.nii.gz")]
    assert ds.labels[0] == "background" and ds.labels[1] == "liver" and len(ds.organs) == 10
    assert load_dataset(root / "dataset.json").cases == ds.cases


def test_nnunet_layout_with_two_channels_and_unlabelled_test_images(tmp_path: Path) -> None:
    for cid in ("a", "b"):
        for ch in range(2):
            _nifti(tmp_path / "imagesTr" / f"{cid}_{ch:04d}.nii.gz")
        _nifti(tmp_path / "labelsTr" / f"{cid}.nii.gz")
    _nifti(tmp_path / "imagesTs" / "t_0000.nii.gz")
    _nifti(tmp_path / "imagesTs" / "t_0001.nii.gz")
    meta = {"channel_names": {"0": "CT", "1": "PET"}, "labels": {"background": 0, "tumour": 1}, "numTraining": 2}
    (tmp_path / "dataset.json").write_text(json.dumps({**meta, "file_ending": ".nii.gz"}))
    ds = load_dataset(tmp_path)
    assert [len(c.images) for c in ds.cases] == [2, 2]
    assert ds.cases[0].images[1].name == "a_0001.nii.gz"
    test_images = [tmp_path / "imagesTs/t_0000.nii.gz", tmp_path / "imagesTs/t_0001.nii.gz"]
    assert ds.test_cases == [Case("t", test_images, None)]
    assert ds.labels == {0: "background", 1: "tumour"}


def test_msd_layout_uses_training_list_and_ignores_hidden_files(tmp_path: Path) -> None:
    for i in (1, 2):
        _nifti(tmp_path / "imagesTr" / f"liver_{i}.nii.gz")
        _nifti(tmp_path / "labelsTr" / f"liver_{i}.nii.gz")
    (tmp_path / "imagesTr" / "._liver_1.nii.gz").write_bytes(b"macOS resource fork")
    _nifti(tmp_path / "imagesTs" / "liver_9.nii.gz")
    meta = {
        "name": "Task03_Liver",
        "labels": {"0": "background", "1": "liver", "2": "cancer"},
        "training": [
            {"image": f"./imagesTr/liver_{i}.nii.gz", "label": f"./labelsTr/liver_{i}.nii.gz"} for i in (1, 2)
        ],
        "test": ["./imagesTs/liver_9.nii.gz"],
    }
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    ds = load_dataset(tmp_path)
    assert ds.layout == "msd" and ds.name == "Task03_Liver"
    assert [c.case_id for c in ds.cases] == ["liver_1", "liver_2"]
    assert ds.cases[0].label == tmp_path / "labelsTr" / "liver_1.nii.gz"
    assert ds.test_cases == [Case("liver_9", [tmp_path / "imagesTs" / "liver_9.nii.gz"], None)]
    assert ds.labels == {0: "background", 1: "liver", 2: "cancer"}


def test_word_layout_without_dataset_json_knows_the_16_organs_and_val_split(tmp_path: Path) -> None:
    for folder, ids in (("Tr", (1, 2, 3)), ("Val", (4,)), ("Ts", (5,))):
        for i in ids:
            _nifti(tmp_path / f"images{folder}" / f"word_{i:04d}.nii.gz")
            _nifti(tmp_path / f"labels{folder}" / f"word_{i:04d}.nii.gz")
    ds = load_dataset(tmp_path)
    assert ds.layout == "word"
    assert [c.case_id for c in ds.cases] == ["word_0001", "word_0002", "word_0003"]
    assert ds.cases[0].images == [tmp_path / "imagesTr" / "word_0001.nii.gz"]
    assert ds.cases[0].label == tmp_path / "labelsTr" / "word_0001.nii.gz"
    assert [c.case_id for c in ds.val_cases] == ["word_0004"]
    assert [c.label for c in ds.test_cases] == [tmp_path / "labelsTs" / "word_0005.nii.gz"]
    assert ds.labels == WORD_LABELS and len(ds.organs) == 16


def test_labels_for_an_organ_subset_keep_their_values_and_unknown_names_are_named(tmp_path: Path) -> None:
    ds = Dataset("WORD", tmp_path, WORD_LABELS, [])
    assert ds.labels_for([]) == WORD_LABELS
    assert ds.labels_for(["pancreas", "liver"]) == {0: "background", 1: "liver", 8: "pancreas"}
    assert ds.keep_labels_for(["pancreas", "liver"]) == (1, 8) and ds.keep_labels_for([]) is None
    with pytest.raises(BenchError, match=r"organs: kidney, aorta are not an organ of WORD \(its organs: liver, "):
        ds.labels_for(["liver", "kidney", "aorta"])


def test_csv_layout_resolves_relative_paths_splits_and_labels_file(tmp_path: Path) -> None:
    for i in range(3):
        _nifti(tmp_path / "img" / f"p{i}.nii.gz")
        _nifti(tmp_path / "seg" / f"p{i}.nii.gz")
    (tmp_path / "pairs.csv").write_text(
        "image,label,split\nimg/p0.nii.gz,seg/p0.nii.gz,train\nimg/p1.nii.gz,seg/p1.nii.gz,train\n"
        f"{tmp_path / 'img/p2.nii.gz'},seg/p2.nii.gz,test\n"
    )
    (tmp_path / "organs.txt").write_text("# organ names\nliver=1\nspleen = 2\n")
    ds = load_dataset(tmp_path / "pairs.csv", labels=tmp_path / "organs.txt")
    assert ds.layout == "csv" and ds.name == "pairs"
    assert [(c.case_id, c.images, c.label) for c in ds.cases] == [
        ("p0", [tmp_path / "img/p0.nii.gz"], tmp_path / "seg/p0.nii.gz"),
        ("p1", [tmp_path / "img/p1.nii.gz"], tmp_path / "seg/p1.nii.gz"),
    ]
    assert [c.case_id for c in ds.test_cases] == ["p2"]
    assert ds.labels == {0: "background", 1: "liver", 2: "spleen"}


def test_csv_without_organ_names_asks_for_labels(tmp_path: Path) -> None:
    (tmp_path / "pairs.csv").write_text("image,label\na.nii.gz,b.nii.gz\n")
    with pytest.raises(BenchError, match="pass --labels FILE"):
        load_dataset(tmp_path / "pairs.csv")
    (tmp_path / "bad.csv").write_text("path,mask\na.nii.gz,b.nii.gz\n")
    with pytest.raises(BenchError, match="'image' and 'label' columns"):
        load_dataset(tmp_path / "bad.csv")


def test_labels_file_accepts_both_json_directions_and_rejects_regions(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"1": "liver", "2": "spleen"}')
    (tmp_path / "b.json").write_text('{"labels": {"background": 0, "liver": 1, "spleen": 2}}')
    (tmp_path / "c.json").write_text('{"labels": {"background": 0, "whole": [1, 2]}}')
    expected = {0: "background", 1: "liver", 2: "spleen"}
    assert parse_labels_file(tmp_path / "a.json") == expected
    assert parse_labels_file(tmp_path / "b.json") == expected
    with pytest.raises(BenchError, match="region-based"):
        parse_labels_file(tmp_path / "c.json")


def test_unrecognised_folder_and_missing_path_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "random").mkdir()
    with pytest.raises(BenchError, match="not a recognised data set layout"):
        load_dataset(tmp_path / "random")
    with pytest.raises(BenchError, match="no such file or folder"):
        load_dataset(tmp_path / "nope")


def test_split_uses_the_datasets_own_test_split_and_a_small_val_slice(tmp_path: Path) -> None:
    ds = _dataset(12, n_test=3)
    train, val, test = split_cases(ds, fold=0, seed=0, splits_file=tmp_path / "splits.json")
    assert [c.case_id for c in test] == ["c100", "c101", "c102"]
    assert len(val) == 1 and len(train) == 11
    assert {c.case_id for c in train} | {c.case_id for c in val} == {c.case_id for c in ds.cases}
    saved = json.loads((tmp_path / "splits.json").read_text())
    assert saved["test_source"] == "dataset" and saved["seed"] == 0


def test_folds_hold_out_disjoint_test_sets_covering_all_cases(tmp_path: Path) -> None:
    ds = _dataset(10)
    tests = []
    for fold in range(5):
        train, val, test = split_cases(ds, fold, seed=3, splits_file=tmp_path / "splits.json")
        ids = [c.case_id for c in (*train, *val, *test)]
        assert len(ids) == len(set(ids)) == 10
        tests.append({c.case_id for c in test})
    assert set().union(*tests) == {c.case_id for c in ds.cases}
    assert all(len(t) == 2 for t in tests)
    with pytest.raises(BenchError, match="--folds must be between 0 and 4"):
        split_cases(ds, 5, seed=3, splits_file=tmp_path / "splits.json")


def test_splits_file_makes_reruns_reuse_the_split_and_guards_against_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "run" / "splits.json"
    first = split_cases(_dataset(10), 1, seed=5, splits_file=path)
    data = json.loads(path.read_text())
    data["folds"][1]["test"], data["folds"][1]["train"] = (
        data["folds"][1]["train"][:2],
        (data["folds"][1]["train"][2:] + data["folds"][1]["test"]),
    )
    path.write_text(json.dumps(data))
    edited = split_cases(_dataset(10), 1, seed=5, splits_file=path)
    assert [c.case_id for c in edited[2]] == data["folds"][1]["test"] != [c.case_id for c in first[2]]
    with pytest.raises(BenchError, match="split seed 5, not 6"):
        split_cases(_dataset(10), 1, seed=6, splits_file=path)
    with pytest.raises(BenchError, match="does not cover"):
        split_cases(_dataset(11), 1, seed=5, splits_file=path)


def test_same_seed_gives_same_split_and_tiny_sets_get_no_val(tmp_path: Path) -> None:
    a = split_cases(_dataset(10), 2, seed=1, splits_file=tmp_path / "a.json")
    b = split_cases(_dataset(10), 2, seed=1, splits_file=tmp_path / "b.json")
    c = split_cases(_dataset(10), 2, seed=2, splits_file=tmp_path / "c.json")
    assert a == b and a != c
    train, val, test = split_cases(_dataset(3), 0, seed=0, splits_file=tmp_path / "tiny.json")
    assert (len(train), len(val), len(test)) == (2, 0, 1)
    with pytest.raises(BenchError, match="at least 2 labelled"):
        split_cases(_dataset(1), 0, seed=0, splits_file=tmp_path / "one.json")
