import json
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.errors import BenchError
from bench.regression import FORMAT, NOISE_K, build_baseline, compare, load_baseline, parse_tolerance, pool_baseline
from bench.run_summary import RunSummary
from bench.store import ResultsStore, make_run_id

MODELS = {"lcovnet": (1_020_000, 12.5), "unet3d": (15_300_000, 310.0)}
PER_CASE = pd.DataFrame({"case": ["c0", "c1"], "label": [1, 1], "name": ["liver"] * 2, "dice": [0.8, 0.7],
                         "hd95": [3.0, 4.0], "status": ["ok", "ok"]})  # fmt: skip
BASE_DICE = {("unet3d", "none"): 0.85, ("lcovnet", "none"): 0.70, ("lcovnet", "ca"): 0.74}
# Noise samples per entry: seed 0 on three CPU settings, seeds 1 and 2 on one.
NOISE = {("AVX512", 2, 0): 0.0, ("AVX2", 2, 0): 0.004, ("DEFAULT", 1, 0): -0.003, ("AVX512", 2, 1): 0.006,
         ("AVX512", 2, 2): -0.005}  # fmt: skip


def _first_step(model: str, kd: str, seed: int) -> dict:
    kd_loss = 0.0 if kd == "none" else 0.01 * (seed + 1)
    seg = 1.5 + 0.1 * seed + (0.2 if model == "unet3d" else 0.0)
    kd_grad_norm = 0.0 if kd == "none" else 0.3 * (seed + 1)
    return {"loss": seg + kd_loss, "seg_loss": seg, "kd_loss": kd_loss, "kd_grad_norm": kd_grad_norm,
            "optimized_params": float(MODELS[model][0])}  # fmt: skip


def _summary(model: str, kd: str, seed: int, dice: float, created: str = "2026-01-01T10:00:00+00:00",
             numerics: tuple[str, int] = ("AVX512", 2), **extra) -> dict:  # fmt: skip
    params, gmacs = MODELS[model]
    return {"model": model, "kd": kd, "teacher": None if kd == "none" else "unet3d", "seed": seed, "preset": "smoke",
            "dataset": "synthetic", "params": params, "gmacs": gmacs, "dice_mean": dice, "hd95_mean": 10 - 5 * dice,
            "latency_ms_median": gmacs / 10, "latency_device": "cpu", "created": created, "torch": "2.13.0",
            "first_step": _first_step(model, kd, seed),
            "numerics": {"cpu_capability": numerics[0], "threads": numerics[1]}, **extra}  # fmt: skip


def _typed(summary: dict, run_id: str = "now") -> RunSummary:
    return RunSummary.from_dict({**summary, "run_id": run_id})


def _record(store: ResultsStore, summary: dict, tag: str = "") -> str:
    run_id = make_run_id(summary["model"], summary["kd"], summary["teacher"], summary["seed"], "synthetic", "ab12")
    store.record_run(run_id + tag, _typed(summary, run_id + tag), PER_CASE)
    return run_id + tag


def make_noise_stores(root: Path) -> list[Path]:
    """One results store per CPU setting, as a user measures noise: each holds every entry's runs of its seeds."""
    stores: dict[tuple[str, int], Path] = {}
    for (capability, threads, seed), offset in NOISE.items():
        path = stores.setdefault((capability, threads), root / f"{capability.lower()}-t{threads}")
        for (model, kd), dice in BASE_DICE.items():
            _record(ResultsStore(path), _summary(model, kd, seed, dice + offset, numerics=(capability, threads)))
    return list(stores.values())


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", "check", *args], capture_output=True, text=True, timeout=120)


def _results_args(stores: list[Path]) -> list[str]:
    return [arg for store in stores for arg in ("--results", str(store))]


@pytest.fixture
def noise(tmp_path: Path) -> tuple[list[Path], Path]:
    """Noise stores plus a baseline written from all of them by ``bench check --update``."""
    stores, baseline = make_noise_stores(tmp_path / "noise"), tmp_path / "baselines" / "smoke.json"
    assert main(["check", "--baseline", str(baseline), "--update", *_results_args(stores)]) == 0
    return stores, baseline


def _fresh_run(tmp_path: Path, dice_shift: dict | None = None, changes: dict | None = None) -> Path:
    """A new results store as CI makes it: seed 0 of every entry, optionally with changed numbers."""
    store = ResultsStore(tmp_path / "now")
    for (model, kd), dice in BASE_DICE.items():
        summary = _summary(model, kd, 0, dice + (dice_shift or {}).get((model, kd), 0.0))
        summary.update((changes or {}).get((model, kd), {}))
        _record(store, summary)
    return store.root


def test_update_derives_each_entrys_tolerance_from_the_spread_of_its_noise_runs(capsys, noise) -> None:
    _, baseline = noise
    assert f"wrote 3 entries to {baseline}" in capsys.readouterr().out
    data = load_baseline(baseline)
    assert data["format"] == FORMAT and data["torch"] == "2.13.0"
    assert data["noise"]["sources"] == {
        "seeds": [0, 1, 2],
        "cpu_capability": ["AVX2", "AVX512", "DEFAULT"],
        "threads": [1, 2],
    }
    assert [(e["model"], e["kd"]) for e in data["entries"]] == [
        ("lcovnet", "ca"),
        ("lcovnet", "none"),
        ("unet3d", "none"),
    ]
    entry = data["entries"][0]
    samples = [0.74 + offset for offset in NOISE.values()]
    dice = entry["statistical"]["dice_mean"]
    assert dice["value"] == pytest.approx(statistics.mean(samples))
    assert dice["spread"] == pytest.approx(statistics.stdev(samples))
    assert dice["tolerance"] == pytest.approx(max(0.01, NOISE_K * statistics.stdev(samples)))
    assert dice["samples"] == 5 and entry["seeds"] == [0, 1, 2] and len(entry["runs"]) == 5
    assert entry["exact"]["params"] == 1_020_000 and entry["exact"]["gmacs"] == 12.5
    assert entry["exact"]["first_step"]["1"] == _first_step("lcovnet", "ca", 1)
    assert entry["informational"] == {"latency_ms_median": 1.25}


def test_pooling_new_noise_runs_into_a_baseline_equals_writing_it_from_all_runs(tmp_path) -> None:
    stores = make_noise_stores(tmp_path / "noise")
    summaries = [s for store in stores for s in ResultsStore(store).summaries()]
    first, later = stores[:1], stores[1:]
    at_once = build_baseline(summaries, {}, "2.13.0")
    partial = build_baseline([s for store in first for s in ResultsStore(store).summaries()], {}, "2.13.0")
    pooled = pool_baseline(partial, [s for store in later for s in ResultsStore(store).summaries()], {})
    assert pooled["noise"]["sources"] == at_once["noise"]["sources"]
    for got, want in zip(pooled["entries"], at_once["entries"], strict=True):
        for metric in ("dice_mean", "hd95_mean"):
            # Sufficient statistics pool exactly; the 1e-12 covers float rounding of the sums (values near 1).
            assert got["statistical"][metric]["samples"] == want["statistical"][metric]["samples"]
            for field in ("value", "spread", "tolerance"):
                assert got["statistical"][metric][field] == pytest.approx(want["statistical"][metric][field], abs=1e-12)
        assert got["exact"]["first_step"] == want["exact"]["first_step"] and got["seeds"] == want["seeds"]
        assert sorted(got["runs"]) == sorted(want["runs"])


def test_pool_through_the_cli_widens_the_tolerance_so_a_new_cpus_healthy_run_passes(tmp_path, noise) -> None:
    _, baseline = noise
    now = _fresh_run(tmp_path, {("lcovnet", "ca"): -0.05})
    assert _bench("--baseline", str(baseline), "--results", str(now)).returncode == 1
    other_cpu = ResultsStore(tmp_path / "other")  # two grids of seed 0 on a CPU the baseline had not seen
    for tag, shift in (("x", -0.05), ("y", -0.04)):
        for (model, kd), dice in BASE_DICE.items():
            offset = shift if (model, kd) == ("lcovnet", "ca") else 0.0
            _record(other_cpu, _summary(model, kd, 0, dice + offset, numerics=("EPYC", 2)), tag=tag)
    proc = _bench("--baseline", str(baseline), "--update", "--pool", "--results", str(other_cpu.root))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert load_baseline(baseline)["entries"][0]["statistical"]["dice_mean"]["samples"] == 5 + 2
    assert _bench("--baseline", str(baseline), "--results", str(now)).returncode == 0
    assert "--pool only goes with --update" in _bench("--baseline", str(baseline), "--pool").stderr


def test_healthy_seed_0_run_passes_and_every_statistical_row_explains_its_verdict(tmp_path, noise) -> None:
    _, baseline = noise
    now = _fresh_run(tmp_path, {("lcovnet", "ca"): -0.01})
    proc = _bench("--baseline", str(baseline), "--results", str(now))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = load_baseline(baseline)
    dice = data["entries"][0]["statistical"]["dice_mean"]
    expected = (
        f"Dice 0.7300 vs baseline {dice['value']:.4f} ± {dice['tolerance']:.4f} "
        f"({NOISE_K:g} x spread {dice['spread']:.4f}, floor 0.01): within noise"
    )
    assert expected in proc.stdout
    assert "latency x1.000 of baseline (informational" in proc.stdout
    # params, gmacs, 3 first-step losses and 2 probes, Dice, HD95; the KD entry's gain
    assert proc.stdout.count(" ok ") == 3 * (2 + 5 + 2) + 1
    assert "OK: 28 checks" in proc.stdout  # latency is shown, not checked


def test_dice_drop_beyond_the_noise_fails_naming_entry_and_numbers(tmp_path, noise) -> None:
    _, baseline = noise
    now = _fresh_run(tmp_path, {("lcovnet", "ca"): -0.05})
    proc = _bench("--baseline", str(baseline), "--results", str(now))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    fail = proc.stdout.split("FAIL: ")[1]
    assert fail.startswith("2 regression(s)")  # Dice and the KD gain; HD95 rose by 0.25 mm, within its 2 mm floor
    assert "synthetic/smoke/lcovnet/kd=ca dice_mean: Dice 0.6900 vs baseline 0.7404" in fail
    assert "synthetic/smoke/lcovnet/kd=ca kd_gain: KD gain -0.0100 vs baseline 0.0400" in fail
    assert "beyond the noise" in fail
    tolerances = "dice=0.06,hd95=1,gain=0.06"
    assert main(["check", "--baseline", str(baseline), "--results", str(now), "--tolerance", tolerances]) == 0


def test_a_kd_gain_that_shrinks_fails_while_every_dice_holds(tmp_path, noise) -> None:
    """The student without KD gets better by as much as the KD run: no Dice check fails, the KD effect is gone."""
    _, baseline = noise
    now = _fresh_run(tmp_path, {("lcovnet", "none"): 0.03})
    proc = _bench("--baseline", str(baseline), "--results", str(now))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    fail = proc.stdout.split("FAIL: ")[1]
    assert fail.startswith("1 regression(s)")
    assert "synthetic/smoke/lcovnet/kd=ca kd_gain: KD gain 0.0100 vs baseline 0.0400 ± 0.0100" in fail
    entry = load_baseline(baseline)["entries"][0]
    # every noise setting moved both runs alike: the paired gain has no spread, so the floor is the tolerance
    assert entry["statistical"]["kd_gain"] == {"value": pytest.approx(0.04), "spread": pytest.approx(0.0, abs=1e-12),
                                               "tolerance": 0.01, "samples": 5}  # fmt: skip


def test_a_kd_gain_is_paired_by_seed_and_cpu_setting_not_across_them() -> None:
    runs = [_typed(_summary("lcovnet", "ca", 0, 0.74, numerics=("AVX2", 2)), "ca-avx2"),
            _typed(_summary("lcovnet", "ca", 0, 0.76, numerics=("AVX512", 2)), "ca-avx512"),
            _typed(_summary("lcovnet", "none", 0, 0.70, numerics=("AVX2", 2)), "none-avx2"),
            _typed(_summary("lcovnet", "none", 0, 0.71, numerics=("AVX512", 2)), "none-avx512"),
            _typed(_summary("lcovnet", "ca", 1, 0.90, numerics=("AVX2", 2)), "ca-seed1-unpaired")]  # fmt: skip
    entry = next(e for e in build_baseline(runs, {}, None)["entries"] if e["kd"] == "ca")
    gain = entry["statistical"]["kd_gain"]
    assert gain["samples"] == 2 and gain["value"] == pytest.approx((0.04 + 0.05) / 2)
    assert gain["spread"] == pytest.approx(statistics.stdev([0.04, 0.05]))


def test_a_kd_entry_whose_student_without_kd_has_no_run_fails_its_gain(tmp_path, noise) -> None:
    _, baseline = noise
    summaries = [s for s in ResultsStore(_fresh_run(tmp_path)).summaries() if s.kd != "none"]
    rows = {(r.key, r.metric): r for r in compare(load_baseline(baseline), summaries).rows}
    row = rows[("synthetic/smoke/lcovnet/kd=ca", "kd_gain")]
    assert row.failed and row.status == "missing"


@pytest.mark.parametrize(
    ("change", "failed_check"),
    [
        ({"params": 2_040_000}, "params"),
        ({"gmacs": 12.5 * (1 + 1e-5)}, "gmacs"),
        ({"first_step": {**_first_step("lcovnet", "ca", 0), "kd_loss": -0.01}}, "first_step.kd_loss (seed 0)"),
        ({"first_step": {**_first_step("lcovnet", "ca", 0), "seg_loss": 0.9}}, "first_step.seg_loss (seed 0)"),
        ({"first_step": {**_first_step("lcovnet", "ca", 0), "kd_grad_norm": 0.0}},
         "first_step.kd_grad_norm (seed 0)"),
        ({"first_step": {**_first_step("lcovnet", "ca", 0), "optimized_params": 1_019_000.0}},
         "first_step.optimized_params (seed 0)"),
    ],
)  # fmt: skip
def test_exact_checks_fail_on_any_machine_for_a_changed_network_or_loss(tmp_path, noise, change, failed_check):
    _, baseline = noise
    now = _fresh_run(tmp_path, changes={("lcovnet", "ca"): change})
    proc = _bench("--baseline", str(baseline), "--results", str(now))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"synthetic/smoke/lcovnet/kd=ca {failed_check}:" in proc.stdout.split("FAIL: ")[1]


def test_first_step_rounding_across_cpu_kinds_is_within_the_exact_tolerance(tmp_path, noise) -> None:
    _, baseline = noise
    rounded = {k: v * (1 + 3e-6) for k, v in _first_step("lcovnet", "ca", 0).items()}
    now = _fresh_run(tmp_path, changes={("lcovnet", "ca"): {"first_step": rounded}})
    assert main(["check", "--baseline", str(baseline), "--results", str(now)]) == 0


def test_first_step_tolerance_widens_to_the_measured_spread_of_a_teacher_dependent_kd_loss(tmp_path) -> None:
    stores = make_noise_stores(tmp_path)
    other_teacher = _summary("lcovnet", "ca", 0, 0.74, created="2026-02-01T00:00:00+00:00")
    other_teacher["first_step"]["kd_loss"] *= 1 + 0.02  # a teacher trained on other CPU kernels, beyond the floor
    _record(ResultsStore(stores[0]), other_teacher, tag="__avx2_teacher")
    summaries = [s for store in stores for s in ResultsStore(store).summaries()]
    entry = next(e for e in build_baseline(summaries, {}, None)["entries"] if e["kd"] == "ca")
    rel = entry["exact"]["first_step_rel"]
    assert rel["seg_loss"] == 1e-4 and rel["kd_loss"] == pytest.approx(NOISE_K * 0.02 / 1.02)
    now = _summary("lcovnet", "ca", 0, 0.74)
    now["first_step"]["kd_loss"] *= 1 + 0.06
    rows = {r.metric: r for r in compare({"entries": [entry]}, [_typed(now)]).rows}
    assert rows["first_step.kd_loss (seed 0)"].status == "ok"
    now["first_step"]["kd_loss"] *= -1  # a flipped sign is still caught
    rows = {r.metric: r for r in compare({"entries": [entry]}, [_typed(now)]).rows}
    assert rows["first_step.kd_loss (seed 0)"].failed


def test_teacher_dependent_first_step_losses_get_the_cross_cpu_floor_and_the_supervised_loss_stays_exact() -> None:
    entries = build_baseline([_typed(_summary("lcovnet", "ca", 0, 0.74), "ca"),
                              _typed(_summary("lcovnet", "none", 0, 0.70), "none")], {}, None)  # fmt: skip
    rel = {e["kd"]: e["exact"]["first_step_rel"] for e in entries["entries"]}
    assert rel["ca"] == {"loss": 1e-3, "seg_loss": 1e-4, "kd_loss": 0.05, "kd_grad_norm": 0.05,
                         "optimized_params": 1e-4}  # fmt: skip
    assert rel["none"] == dict.fromkeys(("loss", "seg_loss", "kd_loss", "kd_grad_norm", "optimized_params"), 1e-4)
    ca = next(e for e in entries["entries"] if e["kd"] == "ca")
    now = _summary("lcovnet", "ca", 0, 0.74)
    now["first_step"] = {k: v * (1 + 5e-4) if k == "loss" else v * 1.01 if k.startswith("kd_") else v
                         for k, v in now["first_step"].items()}  # fmt: skip
    control = _typed(_summary("lcovnet", "none", 0, 0.70), "none")
    assert not any(r.failed for r in compare({"entries": [ca]}, [_typed(now), control]).rows)
    now["first_step"]["seg_loss"] *= 1 + 5e-4  # the supervised loss does not depend on the teacher
    rows = {r.metric: r for r in compare({"entries": [ca]}, [_typed(now)]).rows}
    assert rows["first_step.seg_loss (seed 0)"].failed


def test_latency_is_informational_unless_a_ratio_is_asked_for(tmp_path, noise) -> None:
    _, baseline = noise
    slow = {key: {"latency_ms_median": MODELS[key[0]][1] / 10 * 3} for key in BASE_DICE}
    now = _fresh_run(tmp_path, changes=slow)
    assert main(["check", "--baseline", str(baseline), "--results", str(now)]) == 0
    assert main(["check", "--baseline", str(baseline), "--results", str(now), "--latency-ratio", "2"]) == 1
    data = json.loads(baseline.read_text())
    for entry in data["entries"]:
        entry["latency_device"] = "cuda:0 (NVIDIA H100)"
    baseline.write_text(json.dumps(data))
    assert main(["check", "--baseline", str(baseline), "--results", str(now), "--latency-ratio", "2"]) == 0


def test_latest_run_per_seed_is_compared(tmp_path, noise) -> None:
    _, baseline = noise
    now = _fresh_run(tmp_path)
    store = ResultsStore(now)
    _record(store, _summary("lcovnet", "ca", 0, 0.60, created="2026-02-01T10:00:00+00:00"), tag="__rerun")
    _record(store, _summary("lcovnet", "none", 0, 0.10, created="2025-12-01T10:00:00+00:00"), tag="__older")
    failed = compare(load_baseline(baseline), store.summaries()).regressions
    assert [(r.key, r.metric) for r in failed] == [("synthetic/smoke/lcovnet/kd=ca", "dice_mean"),
                                                   ("synthetic/smoke/lcovnet/kd=ca", "kd_gain")]  # fmt: skip
    assert failed[0].now == pytest.approx(0.60) and failed[1].now == pytest.approx(0.60 - 0.70)


def test_improvement_beyond_the_noise_passes_and_suggests_an_update(tmp_path, noise) -> None:
    _, baseline = noise
    now = _fresh_run(tmp_path, {("unet3d", "none"): 0.1})
    rows = {(r.key, r.metric): r for r in compare(load_baseline(baseline), ResultsStore(now).summaries()).rows}
    row = rows[("synthetic/smoke/unet3d/kd=none", "dice_mean")]
    assert row.status == "improved" and not row.failed and "consider --update" in row.verdict


def test_malformed_tolerance_or_baseline_exits_2(tmp_path, noise, capsys: pytest.CaptureFixture) -> None:
    stores, baseline = noise
    proc = _bench("--baseline", str(baseline), *_results_args(stores), "--tolerance", "dice=lots")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "bench check: error: --tolerance dice must be a number, got 'lots'"
    for bad in ("dice", "latency=2", "dice=0.01,,hd95=1", "hd95=-1", "dice=nan"):
        with pytest.raises(BenchError, match="--tolerance"):
            parse_tolerance(bad)
    assert parse_tolerance("hd95=2.5, dice=0") == {"hd95": 2.5, "dice": 0.0}
    baseline.write_text('{"format": "segkd-bench-baseline/2", "entries": [')
    assert main(["check", "--baseline", str(baseline), "--results", str(stores[0])]) == 2
    assert f"baseline {baseline} is not valid JSON" in capsys.readouterr().err
    baseline.write_text('{"format": "segkd-bench-baseline/1", "entries": []}')
    assert main(["check", "--baseline", str(baseline), "--results", str(stores[0])]) == 2
    assert "has the old format segkd-bench-baseline/1 (no measured noise)" in capsys.readouterr().err
    assert main(["check", "--baseline", str(baseline.with_name("nope.json")), "--results", str(stores[0])]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_baseline_entry_without_a_run_exits_2_naming_it(tmp_path, noise) -> None:
    _, baseline = noise
    data = json.loads(baseline.read_text())
    data["entries"].append({**data["entries"][0], "kd": "ms"})
    baseline.write_text(json.dumps(data))
    now = _fresh_run(tmp_path)
    proc = _bench("--baseline", str(baseline), "--results", str(now))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("bench check: error: no results for baseline entries: synthetic/smoke/lcovnet/kd=ms")
    assert "synthetic/smoke/unet3d/kd=none" in proc.stdout  # the rest is still compared and shown


def _edit_baseline(baseline: Path, edit) -> None:
    data = json.loads(baseline.read_text())
    edit(data)
    baseline.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda d: d.update(entries=[]), "has no entries, so it checks nothing"),
        (lambda d: d["entries"][0].update(exact={}, statistical={}), "(synthetic/smoke/lcovnet/kd=ca) defines no"),
        (lambda d: d["entries"][0]["exact"].update(params="1020000"),
         'entries[0] (synthetic/smoke/lcovnet/kd=ca).exact.params must be a positive integer or null, got "1020000"'),
        (lambda d: d["entries"][1]["statistical"]["dice_mean"].update(tolerance="0.01"),
         "statistical.dice_mean.tolerance must be a finite number >= 0"),
        (lambda d: d["entries"][0]["exact"].update(parms=1), "exact has the unknown key 'parms'"),
        (lambda d: d["entries"][0]["exact"]["first_step"]["0"].update(loss=None), "first_step.0.loss must be a finite"),
        (lambda d: d["entries"][2].update(statistical={"dice": {"value": 0.8}}), "unknown key 'dice'"),
        (lambda d: d["entries"][2].update(model=["unet3d"]), "entries[2].model must be a string"),
    ],
)  # fmt: skip
def test_a_baseline_that_checks_nothing_or_holds_a_wrong_type_exits_2_naming_the_key(tmp_path, noise, edit, words):
    _, baseline = noise
    _edit_baseline(baseline, edit)
    proc = _bench("--baseline", str(baseline), "--results", str(_fresh_run(tmp_path)))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith(f"bench check: error: baseline {baseline}")
    assert proc.stderr.count("\n") == 1 and words in proc.stderr and "OK" not in proc.stdout


def test_a_baseline_nested_too_deeply_exits_2(tmp_path) -> None:
    baseline = tmp_path / "deep.json"
    baseline.write_text('{"format": "segkd-bench-baseline/2", "entries": ' + "[" * 100_000 + "]" * 100_000 + "}")
    proc = _bench("--baseline", str(baseline), "--results", str(tmp_path))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith(f"bench check: error: baseline {baseline} nests lists or tables deeper than 16")
    assert proc.stderr.count("\n") == 1


def test_check_says_how_many_checks_of_each_kind_it_ran(tmp_path, noise) -> None:
    _, baseline = noise
    now = _fresh_run(tmp_path)
    proc = _bench("--baseline", str(baseline), "--results", str(now))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # 3 entries: params, gmacs, 3 first-step losses and 2 probes of seed 0 each; Dice and HD95 each; the KD entry's
    # gain; latency shown only
    assert "ran 21 exact, 6 statistical, 1 KD gain check(s) (and 3 informational row(s), not checks)" in proc.stdout
    assert "OK: 28 checks" in proc.stdout
    proc = _bench("--baseline", str(baseline), "--results", str(now), "--latency-ratio", "2")
    assert "ran 21 exact, 6 statistical, 1 KD gain, 3 latency check(s)\n" in proc.stdout
