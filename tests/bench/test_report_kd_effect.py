"""The report's KD effect table: the teacher - student gap, each method's gain and share of the gap it closes, and a
paired test over (seed, case), computed from a results store and checked against sums done here by hand."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from bench.report import build_report
from bench.report.kd_effect import effect_words, kd_effects
from bench.report.stats import case_mean_dice
from bench.report.tables import runs_frame
from bench.run_summary import RunSummary
from bench.store import ResultsStore

SEEDS = [0, 1, 2]
CASES = [f"case_{c}" for c in range(8)]
TEACHER_DICE = 0.85
STUDENT_DICE = {0: 0.60, 1: 0.63, 2: 0.58}  # the student without KD, per seed
# per-case lift of each method: "ca" lifts every case (by 0.15 + a little per case), "ms" moves cases both ways
LIFT = {"ca": lambda c: 0.15 + 0.01 * c, "ms": lambda c: 0.002 * (-1) ** c}


def _per_case(dice_by_case: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"case": CASES, "label": 1, "name": "liver", "dice": dice_by_case, "hd95": 3.0,
                         "status": "ok"})  # fmt: skip


def _record(store: ResultsStore, run_id: str, model: str, kd: str, seed: int, preset: str, dice: list[float],
            teacher_run: str | None = None) -> None:  # fmt: skip
    summary = {"run_id": run_id, "model": model, "kd": kd, "teacher": None if kd == "none" else "unet3d",
               "teacher_run": teacher_run, "seed": seed, "fold": 0, "preset": preset, "dataset": "synthetic",
               "dice_mean": float(np.mean(dice)), "hd95_mean": 3.0, "n_cases": len(dice),
               "created": "2026-12-05T00:00:00+00:00"}  # fmt: skip
    store.record_run(run_id, RunSummary.from_dict(summary), _per_case(dice))


def _student_cases(seed: int) -> list[float]:
    return [STUDENT_DICE[seed] + 0.01 * (c - 3.5) for c in range(len(CASES))]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ResultsStore:
    store = ResultsStore(tmp_path_factory.mktemp("kd_effect") / "results")
    for seed in SEEDS:
        teacher = f"teacher_s{seed}"  # trained with its own protocol: another preset group
        _record(store, teacher, "unet3d", "none", seed, "smoke-teacher", [TEACHER_DICE] * len(CASES))
        base = _student_cases(seed)
        _record(store, f"none_s{seed}", "lcovnet", "none", seed, "smoke", base)
        for kd, lift in LIFT.items():
            _record(store, f"{kd}_s{seed}", "lcovnet", kd, seed, "smoke",
                    [d + lift(c) for c, d in enumerate(base)], teacher_run=teacher)  # fmt: skip
    return store


def _effects(store: ResultsStore) -> pd.DataFrame:
    return kd_effects(runs_frame(store.summaries()), case_mean_dice(store.per_case())).set_index("kd")


def test_gap_gain_and_closed_share_are_the_per_seed_means_of_teacher_student_and_kd_runs(store) -> None:
    effects = _effects(store)
    student = np.mean(list(STUDENT_DICE.values()))
    gap = TEACHER_DICE - student
    gain = np.mean([LIFT["ca"](c) for c in range(len(CASES))])
    ca = effects.loc["ca"]
    assert (ca.model, ca.teacher, ca.pairs) == ("lcovnet", "unet3d", 3)
    assert ca.teacher_dice == pytest.approx(TEACHER_DICE) and ca.student_dice == pytest.approx(student)
    assert ca.gap == pytest.approx(gap) and ca.gain == pytest.approx(gain)
    assert ca.gain_sd == pytest.approx(0.0, abs=1e-12)  # every seed gains alike
    assert ca.closed == pytest.approx(gain / gap)


def test_the_paired_test_pairs_seed_and_case(store) -> None:
    effects = _effects(store)
    diffs = [LIFT["ms"](c) for _ in SEEDS for c in range(len(CASES))]  # 24 (seed, case) pairs
    ms = effects.loc["ms"]
    assert ms.n_pairs == len(SEEDS) * len(CASES)
    assert ms.p_wilcoxon == pytest.approx(wilcoxon(diffs).pvalue)
    assert effects.loc["ca"].p_wilcoxon < 1e-4


def test_the_report_says_which_methods_beat_no_kd(store, tmp_path: Path) -> None:
    words = effect_words(_effects(store).reset_index())
    assert len(words) == 1
    assert words[0].startswith("lcovnet (teacher unet3d): the teacher is stronger by 0.247 Dice; beat no KD "
                               "significantly: ca (+0.185, 75% of the gap, p=")  # fmt: skip
    assert words[0].endswith("no significant difference (p >= 0.05): ms.")
    report = build_report(store, tmp_path / "report", formats=("md", "csv"), progress=False)
    assert "What KD did" in report.terminal_table() and words[0] in report.terminal_table()
    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "### What KD did" in markdown and f"- {words[0]}" in markdown
    csv = pd.read_csv(tmp_path / "report" / "kd_effect.csv")
    assert sorted(csv.kd) == ["ca", "ms"] and csv.set_index("kd").loc["ca", "closed"] == pytest.approx(
        0.185 / 0.2467, abs=1e-3
    )


def test_a_kd_run_without_its_teacher_or_its_student_without_kd_is_said_so(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "results")
    _record(store, "ca_s0", "lcovnet", "ca", 0, "smoke", _student_cases(0), teacher_run="checkpoint:t.pt")
    effects = _effects(store)
    assert effects.loc["ca"].pairs == 0 and "no run of the same student without KD" in effects.loc["ca"].note
    assert effect_words(effects.reset_index()) == []


def test_the_kd_benchmark_prints_each_methods_gain_and_how_its_rank_holds_across_seeds(store) -> None:
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_kd.py"
    proc = subprocess.run([sys.executable, str(script), "--report-only", "--results", str(store.root)],
                          capture_output=True, text=True, encoding="utf-8", timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {tuple(line.split()[:2]): line for line in proc.stdout.splitlines() if line.startswith("lcovnet")}
    assert set(rows) == {("lcovnet", "ca"), ("lcovnet", "ms"), ("lcovnet", "none"), ("lcovnet:", "Kendall")}
    assert "+0.1850 ± 0.0000" in rows[("lcovnet", "ca")] and "75%" in rows[("lcovnet", "ca")]
    assert rows[("lcovnet", "ca")].rstrip().endswith("1 1 1")  # ca ranks first on every seed
    assert "Kendall tau between seeds' method rankings 1.00" in rows[("lcovnet:", "Kendall")]
    assert "3 of 3 seeds agree on the top three" in rows[("lcovnet:", "Kendall")]


def test_the_kd_benchmark_prints_a_dash_for_the_seed_a_method_has_not_run_yet(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "results")
    for seed in (0, 1):
        _record(store, f"teacher_s{seed}", "unet3d", "none", seed, "smoke-teacher", [TEACHER_DICE] * len(CASES))
        _record(store, f"none_s{seed}", "lcovnet", "none", seed, "smoke", _student_cases(seed))
    _record(store, "ca_s0", "lcovnet", "ca", 0, "smoke", [d + 0.1 for d in _student_cases(0)], teacher_run="teacher_s0")
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_kd.py"
    proc = subprocess.run([sys.executable, str(script), "--report-only", "--results", str(store.root)],
                          capture_output=True, text=True, encoding="utf-8", timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    ca = next(line for line in proc.stdout.splitlines() if line.startswith("lcovnet") and " ca " in line)
    assert ca.rstrip().endswith("1 -")  # first on seed 0, not run on seed 1 (an interrupted benchmark)
