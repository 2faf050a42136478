"""The public abdominal CT sets read as distributed (BTCV, AMOS22, FLARE22, KiTS23, TotalSegmentator v2,
AbdomenCT-1K): recognised, split and named in the canonical organ vocabulary, on replicas of their layouts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from bench.data.label_parts import read_label
from bench.data.layouts import load_dataset
from bench.data.organs import canonical_labels, canonical_name
from bench.data.public_sets import BTCV_LABELS
from bench.data.totalseg import ABDOMINAL
from bench.errors import BenchError
from tests.bench.public_replicas import AMOS_LABELS, REPLICAS, organ_map
from tests.bench.runutil import TINY_RUN, bench_cmd

# layout -> (data set name, training, validation, test cases, three of its organs in order of value)
EXPECTED = {
    "btcv": ("BTCV", 4, 0, 1, ["spleen", "kidney_right", "kidney_left"]),
    "amos22": ("AMOS", 3, 1, 1, ["spleen", "kidney_right", "kidney_left"]),
    "flare22": ("FLARE22", 3, 1, 1, ["liver", "kidney_right", "spleen"]),
    "kits23": ("KiTS23", 4, 0, 0, ["kidney", "kidney_tumor", "kidney_cyst"]),
    "totalsegmentator": ("TotalSegmentator", 3, 1, 1, ["spleen", "kidney_right", "kidney_left"]),
    "abdomenct1k": ("AbdomenCT-1K", 3, 0, 1, ["liver", "kidney", "spleen"]),
}


@pytest.fixture(scope="module")
def replicas(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("public")
    return {name: build(root / name) for name, build in REPLICAS.items()}


@pytest.mark.parametrize("layout", list(EXPECTED))
def test_data_check_recognises_the_distributed_layout(replicas: dict[str, Path], layout: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "data", "check", "--data", str(replicas[layout]), "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    name, train, val, test, organs = EXPECTED[layout]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"data set {name} ({layout}) at ")
    assert lines[1].startswith(f"cases: {train} training, {val} validation, {test} test;")
    assert lines[2].startswith(f"organs: {', '.join(organs)}, ") or lines[2] == f"organs: {', '.join(organs)}"
    assert "no problems found" in proc.stdout


def test_btcv_names_its_13_organs_canonically_and_pairs_img_with_label(replicas: dict[str, Path]) -> None:
    ds = load_dataset(replicas["btcv"])
    assert len(ds.organs) == 13 and ds.organs[9] == "inferior_vena_cava" and ds.organs[10].startswith("portal_vein")
    case = ds.cases[0]
    assert case.case_id == "img0001" and case.label.name == "label0001.nii.gz"
    assert ds.test_cases[0].label is None  # BTCV's test images come without labels


def test_amos_keeps_validation_and_leaves_mri_out_by_default(replicas: dict[str, Path]) -> None:
    ct = load_dataset(replicas["amos22"])
    assert [c.case_id for c in ct.cases] == ["amos_0001", "amos_0002", "amos_0003"]
    assert [c.case_id for c in ct.val_cases] == ["amos_0008"]
    assert ct.notes[0].startswith("left out 2 MRI case(s)")
    mri = load_dataset(replicas["amos22"], modality="mri")
    assert [c.case_id for c in mri.all_cases()] == ["amos_0540", "amos_0580"]
    both = load_dataset(replicas["amos22"], modality="all")
    assert len(both.cases) == 4 and len(both.val_cases) == 2 and both.notes[0].startswith("CT and MRI cases together")
    assert mri.channel_norms == ("zscore",) and ct.channel_norms is None
    assert ct.organs[8] == "aorta" and ct.organs[9] == "inferior_vena_cava"  # AMOS spells them "arota", "postcava"


def test_amos_modality_is_chosen_on_the_command_line(replicas: dict[str, Path]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "data", "check", "--data", str(replicas["amos22"]), "--modality", "all"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].startswith("cases: 4 training, 2 validation, 1 test;")


def test_flare22_sorts_training_tuning_validation_and_unlabelled(replicas: dict[str, Path]) -> None:
    ds = load_dataset(replicas["flare22"])
    assert [c.case_id for c in ds.cases] == ["FLARE22_Tr_0001", "FLARE22_Tr_0002", "FLARE22_Tr_0003"]
    assert ds.cases[0].label.name == "FLARE22_Tr_0001.nii.gz"
    assert [(c.case_id, c.label is not None) for c in ds.val_cases] == [("FLARE22_Ts_0001", True)]
    assert [(c.case_id, c.label) for c in ds.test_cases] == [("FLARE22_Ts_0051", None)]
    assert [c.case_id for c in ds.unlabelled] == ["Case_00001", "Case_00002"]


def test_kits23_reads_case_folders_and_its_evaluation_regions(replicas: dict[str, Path]) -> None:
    ds = load_dataset(replicas["kits23"])
    assert [c.case_id for c in ds.cases] == [f"case_{n:05d}" for n in range(4)]
    assert ds.regions == {"kidney_and_masses": (1, 2, 3), "masses": (2, 3), "tumor": (2,)}


def test_totalsegmentator_merges_the_abdominal_masks_into_one_label_map(replicas: dict[str, Path]) -> None:
    ds = load_dataset(replicas["totalsegmentator"])
    assert list(ds.organs.values()) == list(ABDOMINAL)
    case = ds.cases[0]
    merged = sitk.GetArrayFromImage(read_label(case.label, case.label_parts))
    # The replica's structures are numbered in ABDOMINAL's order and then the extra ones (brain, ...): the merged
    # map keeps the abdominal values and leaves the others background.
    written = organ_map(list(range(1, len(ABDOMINAL) + 4)), 0)
    np.testing.assert_array_equal(merged, np.where(written <= len(ABDOMINAL), written, 0))
    header = sitk.ReadImage(str(case.images[0]))
    assert read_label(case.label, case.label_parts).GetDirection() == header.GetDirection()
    assert [c.case_id for c in ds.val_cases] == ["s0003"] and [c.case_id for c in ds.test_cases] == ["s0004"]


def test_totalsegmentator_structures_and_values_are_chosen_by_a_labels_file(
    replicas: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "pick.txt").write_text("liver=1\nbrain=2\n")
    ds = load_dataset(replicas["totalsegmentator"], tmp_path / "pick.txt")
    case = ds.cases[1]
    merged = sitk.GetArrayFromImage(read_label(case.label, case.label_parts))
    written = organ_map(list(range(1, len(ABDOMINAL) + 4)), 1)
    liver, brain = ABDOMINAL.index("liver") + 1, len(ABDOMINAL) + 1
    np.testing.assert_array_equal(merged, (written == liver) * 1 + (written == brain) * 2)


def test_an_unrecognised_folder_lists_the_layouts_and_the_csv_columns(tmp_path: Path) -> None:
    (tmp_path / "scans").mkdir()
    with pytest.raises(BenchError) as err:
        load_dataset(tmp_path)
    message = str(err.value)
    for known in ("BTCV", "AMOS22", "FLARE22", "KiTS23", "TotalSegmentator", "AbdomenCT-1K", "nnU-Net", "MSD"):
        assert known in message
    assert "image, label, case_id, split" in message and "\n" not in message


def test_a_csv_of_same_named_files_takes_case_ids_from_their_folders(replicas: dict[str, Path]) -> None:
    kits = replicas["kits23"] / "dataset"
    rows = [f"case_{n:05d}/imaging.nii.gz,case_{n:05d}/segmentation.nii.gz" for n in range(4)]
    (kits / "kits.csv").write_text("image,label\n" + "\n".join(rows) + "\n")
    (kits / "labels.txt").write_text("kidney=1\ntumor=2\ncyst=3\n")
    ds = load_dataset(kits / "kits.csv", kits / "labels.txt")
    assert [c.case_id for c in ds.cases] == [f"case_{n:05d}" for n in range(4)]


def test_organ_names_of_each_data_set_map_to_one_vocabulary() -> None:
    amos = canonical_labels({int(k): v for k, v in AMOS_LABELS.items()})
    assert [amos[k] for k in (2, 4, 8, 9, 11, 14, 15)] == [
        "kidney_right", "gallbladder", "aorta", "inferior_vena_cava", "adrenal_gland_right", "urinary_bladder",
        "prostate_or_uterus",
    ]  # fmt: skip
    assert [amos[k] for k in range(1, 10)] == [BTCV_LABELS[k] for k in range(1, 10)]
    assert [canonical_name(n) for n in ("IVC", "postcava", "Inferior Vena Cava", "inferior_vena_cava")] == [
        "inferior_vena_cava"
    ] * 4
    assert canonical_name("Head_of_femur_L") == "femur_head_left" and canonical_name("tumour") == "tumour"


def test_a_tiny_run_on_totalsegmentator_scores_its_merged_abdominal_organs(
    replicas: dict[str, Path], tmp_path: Path
) -> None:
    settings = [*TINY_RUN[: TINY_RUN.index("--whole-volume")], "--set", "iterations=2", "--whole-volume", "none"]
    proc = subprocess.run(
        bench_cmd("-q", "run", "--models", "lcovnet", "--data", str(replicas["totalsegmentator"]),
                  "--results", str(tmp_path), *settings),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (per_case,) = tmp_path.glob("runs/*/per_case.csv")
    rows = pd.read_csv(per_case)
    assert set(rows["case"]) == {"s0004"}  # meta.csv's test split
    assert list(rows["name"]) == list(ABDOMINAL)
