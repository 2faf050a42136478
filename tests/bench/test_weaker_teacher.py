"""A KD row whose teacher is weaker than its student is marked in the report and noted by `bench check`."""

import subprocess

import numpy as np
import pytest

from bench.report import build_report
from bench.run_summary import RunSummary
from bench.store import ResultsStore, make_run_id
from bench.weaker_teacher import weaker_teachers
from tests.bench.runutil import bench_cmd
from tests.bench.test_report import _per_case, _record, _summary


def _run(model, kd, seed, dice, teacher=None, teacher_run=None):
    return RunSummary.from_dict({"run_id": f"{model}-{kd}-{seed}", "dataset": "D", "preset": "smoke", "model": model,
                                 "kd": kd, "teacher": teacher, "teacher_run": teacher_run, "seed": seed,
                                 "dice_mean": dice})  # fmt: skip


def test_a_teacher_below_the_student_without_kd_is_found_with_both_means_over_the_common_seeds():
    summaries = [
        _run("unet3d", "none", 0, 0.60), _run("unet3d", "none", 1, 0.70),
        _run("lcovnet", "none", 0, 0.66), _run("lcovnet", "none", 1, 0.68),
        _run("lcovnet", "ca", 0, 0.61, "unet3d", "unet3d-none-0"),
        _run("lcovnet", "ca", 1, 0.69, "unet3d", "unet3d-none-1"),
        _run("nnunet", "none", 0, 0.50), _run("nnunet", "ca", 0, 0.55, "unet3d", "unet3d-none-0"),
    ]  # fmt: skip
    # lcovnet: teacher 0.65 against 0.67 over seeds 0 and 1 -> weaker; nnunet: teacher 0.60 against 0.50 -> not.
    (found,) = weaker_teachers(summaries)
    assert found.key == ("D", "smoke", "lcovnet", "ca", "unet3d") and found.seeds == (0, 1)
    assert found.teacher_dice == pytest.approx(0.65) and found.student_dice == pytest.approx(0.67)
    assert "teacher Dice 0.6500 < lcovnet without KD 0.6700 (seed 0,1)" in found.describe()


def test_a_teacher_from_a_checkpoint_or_a_student_without_its_no_kd_run_is_not_judged():
    summaries = [
        _run("lcovnet", "none", 0, 0.9),
        _run("lcovnet", "ca", 0, 0.5, "unet3d", "checkpoint:teacher.pt"),
        _run("unet3d", "none", 1, 0.1), _run("lcovnet", "ca", 1, 0.5, "unet3d", "unet3d-none-1"),
    ]  # fmt: skip
    assert weaker_teachers(summaries) == []


@pytest.fixture(scope="module")
def weak_store(tmp_path_factory):
    """unet3d (Dice ~0.55) teaches lcovnet (Dice ~0.75 without KD), one seed."""
    root = tmp_path_factory.mktemp("weak")
    store = ResultsStore(root / "results")
    rng = np.random.default_rng(0)
    teacher_id = make_run_id("unet3d", "none", None, 0, "synthetic", "3f2a9c1b")
    for model, kd, teacher, base in (("unet3d", "none", None, 0.55), ("lcovnet", "none", None, 0.75),
                                     ("lcovnet", "ca", "unet3d", 0.74)):  # fmt: skip
        per_case = _per_case(base, rng, missed=False)
        summary = _summary(model, kd, teacher, 0, 1000, 1.0, per_case)
        run_id = make_run_id(model, kd, teacher, 0, "synthetic", "3f2a9c1b")
        summary.update(run_id=run_id, teacher_run=teacher_id if teacher else None)
        _record(store, run_id, summary, per_case)
    return root


def test_report_marks_the_kd_row_of_a_weaker_teacher_and_gives_the_numbers(weak_store):
    report = build_report(ResultsStore(weak_store / "results"), weak_store / "report", formats=("md",), progress=False)
    agg = report.agg.set_index(["model", "kd"])
    assert bool(agg.loc[("lcovnet", "ca"), "teacher_weaker"]) and not agg.loc[("lcovnet", "none"), "teacher_weaker"]
    markdown = (weak_store / "report" / "report.md").read_text(encoding="utf-8")
    assert "| unet3d (weaker) |" in markdown
    assert "synthetic/smoke/lcovnet/kd=ca (T: unet3d): teacher weaker than student, teacher Dice 0.5" in markdown
    assert "this row measures distillation from a worse model" in markdown


def test_bench_check_notes_a_weaker_teacher_without_failing_the_gate(weak_store):
    results, baseline = weak_store / "results", weak_store / "baseline.json"
    update = subprocess.run(bench_cmd("check", "--update", "--baseline", str(baseline), "--results", str(results)),
                            capture_output=True, text=True, encoding="utf-8", timeout=300)  # fmt: skip
    assert update.returncode == 0, update.stderr
    check = subprocess.run(bench_cmd("check", "--baseline", str(baseline), "--results", str(results)),
                           capture_output=True, text=True, encoding="utf-8", timeout=300)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert "note: synthetic/smoke/lcovnet/kd=ca (T: unet3d): teacher weaker than student" in check.stdout
    assert "its KD checks measure distillation from a worse model" in check.stdout
