import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.errors import BenchError
from bench.regression import FORMAT, build_baseline, compare, effective_tolerance, load_baseline, parse_tolerance
from bench.store import ResultsStore, make_run_id

MODELS = {"lcovnet": (1_020_000, 12.5), "unet3d": (15_300_000, 310.0)}
PER_CASE = pd.DataFrame({"case": ["c0", "c1"], "label": [1, 1], "name": ["liver"] * 2, "dice": [0.8, 0.7],
                         "hd95": [3.0, 4.0], "status": ["ok", "ok"]})


def _summary(model: str, kd: str, seed: int, dice: float, created: str = "2026-01-01T10:00:00+00:00", **extra) -> dict:
    params, gmacs = MODELS[model]
    return {"model": model, "kd": kd, "teacher": None if kd == "none" else "unet3d", "seed": seed, "preset": "smoke",
            "dataset": "synthetic", "params": params, "gmacs": gmacs, "dice_mean": dice, "hd95_mean": 10 - 5 * dice,
            "latency_ms_median": gmacs / 10, "latency_device": "cpu (2 threads)", "created": created,
            "torch": "2.13.0", **extra}


def _record(store: ResultsStore, summary: dict, tag: str = "") -> None:
    run_id = make_run_id(summary["model"], summary["kd"], summary["teacher"], summary["seed"], "synthetic", "ab12")
    store.record_run(run_id + tag, summary, PER_CASE)


def make_results(root: Path) -> ResultsStore:
    store = ResultsStore(root)
    for seed in (0, 1):
        _record(store, _summary("unet3d", "none", seed, 0.85 + 0.01 * seed))
        _record(store, _summary("lcovnet", "none", seed, 0.70 + 0.01 * seed))
        _record(store, _summary("lcovnet", "ca", seed, 0.74 + 0.01 * seed))
    return store


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", "check", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def updated(tmp_path: Path) -> tuple[Path, Path]:
    """Results plus a baseline written from them by ``bench check --update``."""
    results, baseline = tmp_path / "results", tmp_path / "baselines" / "smoke.json"
    make_results(results)
    assert main(["check", "--baseline", str(baseline), "--results", str(results), "--update",
                 "--tolerance", "dice=0.02"]) == 0
    return results, baseline


def _edit(baseline: Path, model: str, kd: str, metric: str, change) -> None:
    data = json.loads(baseline.read_text())
    entry = next(e for e in data["entries"] if e["model"] == model and e["kd"] == kd)
    entry["metrics"][metric] = change(entry["metrics"][metric])
    baseline.write_text(json.dumps(data, indent=2))


def test_update_writes_a_sorted_baseline_of_seed_means_that_reads_back(capsys, updated) -> None:
    results, baseline = updated
    assert f"wrote 3 entries to {baseline}" in capsys.readouterr().out
    data = load_baseline(baseline)
    assert list(data) == ["format", "created", "torch", "tolerance", "entries"]
    assert data["format"] == FORMAT and data["torch"] == "2.13.0"
    assert data["tolerance"] == {"dice": 0.02, "hd95": 1.0}
    assert [(e["model"], e["kd"]) for e in data["entries"]] == [("lcovnet", "ca"), ("lcovnet", "none"),
                                                                ("unet3d", "none")]
    entry = data["entries"][0]
    assert entry["seeds"] == [0, 1] and len(entry["runs"]) == 2 and entry["latency_device"] == "cpu (2 threads)"
    assert entry["metrics"] == {"params": 1_020_000, "gmacs": 12.5, "dice_mean": pytest.approx(0.745),
                                "hd95_mean": pytest.approx(10 - 5 * 0.745), "latency_ms_median": 1.25}
    assert baseline.read_text().startswith('{\n  "format": "segkd-bench-baseline/1",\n  "created": ')
    assert main(["check", "--baseline", str(baseline), "--results", str(results), "--update"]) == 0
    assert load_baseline(baseline)["tolerance"] == {"dice": 0.02, "hd95": 1.0}  # the hints survive a re-update


def test_unchanged_results_pass(updated) -> None:
    results, baseline = updated
    proc = _bench("--baseline", str(baseline), "--results", str(results), "--latency-ratio", "1.1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["key", "metric", "baseline", "now", "delta", "allowed", "status"]
    assert sum(line.rstrip().endswith(" ok") for line in lines) == 15
    rows = [line.split() for line in lines]
    assert ["synthetic/smoke/lcovnet/kd=ca", "dice_mean", "0.745", "0.745", "+0", ">=", "0.725", "ok"] in rows
    assert ["synthetic/smoke/unet3d/kd=none", "latency_ms_median", "31", "31", "x1.000", "<=", "x1.1", "ok"] in rows
    assert "OK: 15 checks" in proc.stdout


def test_raised_baseline_dice_fails_with_exit_1(updated) -> None:
    results, baseline = updated
    _edit(baseline, "lcovnet", "ca", "dice_mean", lambda v: v + 0.05)
    proc = _bench("--baseline", str(baseline), "--results", str(results))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failed = [line for line in proc.stdout.splitlines() if "REGRESSED" in line]
    assert len(failed) == 1 and failed[0].startswith("synthetic/smoke/lcovnet/kd=ca") and "dice_mean" in failed[0]
    assert "FAIL: 1 regression(s)" in proc.stdout
    assert main(["check", "--baseline", str(baseline), "--results", str(results), "--tolerance", "dice=0.06"]) == 0


def test_changed_mac_count_fails(updated, capsys: pytest.CaptureFixture) -> None:
    results, baseline = updated
    args = ["check", "--baseline", str(baseline), "--results", str(results)]
    _edit(baseline, "unet3d", "none", "gmacs", lambda v: v * (1 + 1e-8))  # within 1e-6 relative
    assert main(args) == 0
    _edit(baseline, "unet3d", "none", "gmacs", lambda v: v * (1 + 1e-5))
    assert main(args) == 1
    assert "synthetic/smoke/unet3d/kd=none" in capsys.readouterr().out.split("CHANGED")[0].splitlines()[-1]
    _edit(baseline, "unet3d", "none", "gmacs", lambda v: 310.0)
    _edit(baseline, "lcovnet", "none", "params", lambda v: v + 1)
    assert main(args) == 1


def test_malformed_tolerance_or_baseline_exits_2(updated, capsys: pytest.CaptureFixture) -> None:
    results, baseline = updated
    proc = _bench("--baseline", str(baseline), "--results", str(results), "--tolerance", "dice=lots")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "bench check: error: --tolerance dice must be a number, got 'lots'"
    for bad in ("dice", "latency=2", "dice=0.01,,hd95=1", "hd95=-1", "dice=nan"):
        with pytest.raises(BenchError, match="--tolerance"):
            parse_tolerance(bad)
    assert parse_tolerance("hd95=2.5, dice=0") == {"hd95": 2.5, "dice": 0.0}
    baseline.write_text('{"format": "segkd-bench-baseline/1", "entries": [')
    assert main(["check", "--baseline", str(baseline), "--results", str(results)]) == 2
    assert f"baseline {baseline} is not valid JSON" in capsys.readouterr().err
    assert main(["check", "--baseline", str(baseline.with_name("nope.json")), "--results", str(results)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_baseline_entry_without_a_run_exits_2_naming_it(updated) -> None:
    results, baseline = updated
    data = json.loads(baseline.read_text())
    data["entries"].append({**data["entries"][0], "kd": "ms"})
    data["entries"][1]["seeds"] = [0, 1, 2]
    baseline.write_text(json.dumps(data))
    proc = _bench("--baseline", str(baseline), "--results", str(results))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("bench check: error: no results for baseline entries: synthetic/smoke/lcovnet/"
                                  "kd=none (seeds 2); synthetic/smoke/lcovnet/kd=ms (seeds 0, 1)")
    assert "synthetic/smoke/unet3d/kd=none" in proc.stdout  # the rest is still compared and shown


def test_latest_run_per_seed_is_compared(tmp_path: Path) -> None:
    store = make_results(tmp_path)
    baseline = build_baseline(store.summaries(), {}, "2.13.0")
    tolerance = effective_tolerance(baseline, {})
    assert not compare(baseline, store.summaries(), tolerance).regressions
    _record(store, _summary("lcovnet", "ca", 1, 0.60, created="2026-02-01T10:00:00+00:00"), tag="__rerun")
    _record(store, _summary("lcovnet", "none", 0, 0.10, created="2025-12-01T10:00:00+00:00"), tag="__older")
    failed = compare(baseline, store.summaries(), tolerance).regressions
    assert [(r.key, r.metric) for r in failed] == [("synthetic/smoke/lcovnet/kd=ca", "dice_mean")]
    assert failed[0].now == pytest.approx((0.74 + 0.60) / 2)


def test_each_metric_fails_only_in_its_bad_direction(tmp_path: Path) -> None:
    store = make_results(tmp_path)
    baseline = build_baseline(store.summaries(), {}, None)
    entry = baseline["entries"][0]["metrics"]
    entry["dice_mean"] -= 0.2  # now is much better: improved, not a failure
    entry["hd95_mean"] -= 0.9  # now is worse, but within 1.0 mm
    entry["latency_ms_median"] /= 1.5
    tolerance = effective_tolerance(baseline, {})
    rows = {r.metric: r for r in compare(baseline, store.summaries(), tolerance).rows if r.key.endswith("kd=ca")}
    assert rows["dice_mean"].status == "improved" and not rows["dice_mean"].failed
    assert rows["hd95_mean"].status == "ok"
    assert rows["latency_ms_median"].status == "not checked"
    rows = {r.metric: r for r in compare(baseline, store.summaries(), {"hd95": 0.5}, latency_ratio=1.2).rows
            if r.key.endswith("kd=ca")}
    assert rows["hd95_mean"].status == "REGRESSED" and rows["latency_ms_median"].status == "SLOWER"
    assert rows["latency_ms_median"].delta == "x1.500"
    baseline["entries"][0]["latency_device"] = "cuda:0 (NVIDIA H100)"
    rows = {r.metric: r for r in compare(baseline, store.summaries(), tolerance, latency_ratio=1.2).rows
            if r.key.endswith("kd=ca")}
    assert rows["latency_ms_median"].status == "other device" and not rows["latency_ms_median"].failed


def test_metric_missing_now_fails_but_missing_in_baseline_is_skipped(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    _record(store, _summary("lcovnet", "none", 0, 0.7))
    baseline = build_baseline(store.summaries(), {}, None)
    baseline["entries"][0]["metrics"]["params"] = None
    _record(store, _summary("lcovnet", "none", 0, 0.7, created="2026-03-01T00:00:00+00:00", hd95_mean=None), "__b")
    rows = {r.metric: r for r in compare(baseline, store.summaries(), effective_tolerance(baseline, {})).rows}
    assert "params" not in rows
    assert rows["hd95_mean"].status == "missing" and rows["hd95_mean"].failed
