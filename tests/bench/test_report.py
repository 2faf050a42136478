import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.stats import wilcoxon

from bench.cli import main
from bench.report import build_report
from bench.report.stats import paired_wilcoxon, pareto_front
from bench.run_summary import RunSummary
from bench.store import ResultsStore, make_run_id

ORGANS = ["liver", "spleen", "left kidney"]
N_CASES = 6
SEEDS = [0, 1]
STUDENTS = {"lcovnet": (1_020_000, 12.5, 0.70), "lcovnet_small": (310_000, 4.25, 0.62)}
TEACHER = ("unet3d", 15_300_000, 310.0, 0.85)
KD_GAIN = {"none": 0.0, "ca": 0.04, "ms": 0.0}  # "ca" lifts every case; "ms" only adds noise


def _per_case(base: float, rng: np.random.Generator, missed: bool) -> pd.DataFrame:
    rows = []
    for c in range(N_CASES):
        for label, organ in enumerate(ORGANS, start=1):
            dice = float(np.clip(base + 0.03 * c / N_CASES - 0.05 * label / 3 + rng.normal(0, 0.01), 0, 1))
            status, hd95 = "ok", 2.0 + 20 * (1 - dice)
            if missed and c == 0 and label == 3:
                dice, hd95, status = 0.0, float("nan"), "missed"
            if c == 1 and label == 2:
                dice, hd95, status = float("nan"), float("nan"), "both_empty"
            rows.append(
                {"case": f"case_{c:02d}", "label": label, "name": organ, "dice": dice, "hd95": hd95, "status": status}
            )
    return pd.DataFrame(rows)


def _summary(
    model: str, kd: str, teacher: str | None, seed: int, params: int, gmacs: float, per_case: pd.DataFrame
) -> dict:
    case_dice = per_case.groupby("case")["dice"].mean()
    per_organ = {
        name: {
            "dice": g.dice.mean(),
            "hd95": g.hd95.mean(),
            "n_missed": int((g.status == "missed").sum()),
            "n_false_positive": 0,
        }
        for name, g in per_case.groupby("name", sort=False)
    }
    return {
        "model": model,
        "kd": kd,
        "teacher": teacher,
        "teacher_run": None,
        "seed": seed,
        "preset": "smoke",
        "preset_hash": "3f2a9c1b",
        "dataset": "synthetic",
        "patch": [32, 64, 64],
        "device": "cpu",
        "latency_device": "cpu (2 threads)",
        "params": params,
        "gmacs": gmacs,
        "latency_ms_median": gmacs * 2.0 + 3.0,
        "latency_ms_p90": gmacs * 2.2 + 3.0,
        "peak_mem_mb": params / 1e4,
        "dice_mean": case_dice.mean(),
        "dice_std": case_dice.std(ddof=0),
        "hd95_mean": per_case.hd95.mean(),
        "hd95_std": per_case.hd95.std(ddof=0),
        "n_cases": N_CASES,
        "per_organ": per_organ,
        "n_missed": int((per_case.status == "missed").sum()),
        "n_false_positive": 0,
        "n_both_empty": int((per_case.status == "both_empty").sum()),
        "train_seconds": 12.0,
        "iterations": 40,
        "kd_hparams": {"lambda": 0.5} if kd != "none" else {},
        "created": f"2026-01-0{seed + 1}T10:00:00+00:00",
        "torch": "2.13.0",
        "hd95_definition": "medpy_pooled_p95",
    }


def _record(store: ResultsStore, run_id: str, summary: dict, per_case: pd.DataFrame) -> None:
    """Record ``summary`` (the keys a test gives; the others null, as in an older store) as run ``run_id``."""
    store.record_run(run_id, RunSummary.from_dict({**summary, "run_id": run_id}), per_case)


def _train_log(seed: int, base: float) -> pd.DataFrame:
    it = np.arange(1, 41)
    val = [round(base * i / 40, 4) if i % 10 == 0 else np.nan for i in it]
    return pd.DataFrame(
        {
            "iteration": it,
            "loss": 2.0 / np.sqrt(it) + seed * 0.01,
            "seg_loss": 1.8 / np.sqrt(it),
            "kd_loss": 0.2 / np.sqrt(it),
            "lr": 0.01,
            "val_dice": val,
            "seconds": it * 0.3,
        }
    )


def make_fake_store(root: Path) -> ResultsStore:
    """2 students x (none, ca, ms) distilled from unet3d, plus the teacher's own run; 2 seeds, 6 cases, 3 organs."""
    store = ResultsStore(root)
    configs = [(TEACHER[0], "none", None, *TEACHER[1:])]
    configs += [(m, kd, None if kd == "none" else TEACHER[0], *STUDENTS[m]) for m in STUDENTS for kd in KD_GAIN]
    for i, (model, kd, teacher, params, gmacs, base) in enumerate(configs):
        for seed in SEEDS:
            rng = np.random.default_rng(100 * i + seed)
            per_case = _per_case(base + KD_GAIN[kd] + 0.005 * seed, rng, missed=model == "lcovnet_small")
            run_id = make_run_id(model, kd, teacher, seed, "synthetic", "3f2a9c1b")
            _train_log(seed, base).to_csv(store.run_dir(run_id) / "train_log.csv", index=False)
            _record(store, run_id, _summary(model, kd, teacher, seed, params, gmacs, per_case), per_case)
    return store


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("results")
    store = make_fake_store(root)
    return store, build_report(store, root / "report", progress=False)


def _expected(store: ResultsStore) -> pd.DataFrame:
    """The main-table numbers recomputed straight from the summaries and per-case rows, independently of the report."""
    runs = pd.DataFrame([s.to_dict() for s in store.summaries()])
    runs["teacher"] = runs["teacher"].fillna("-")
    per_case = store.per_case()
    case_dice = per_case[per_case.label != 0].groupby(["run_id", "case"])["dice"].mean()
    rows = []
    for (model, kd, teacher), g in runs.groupby(["model", "kd", "teacher"]):
        row = {
            "model": model,
            "kd": kd,
            "teacher": teacher,
            "dice": g.dice_mean.mean(),
            "dice_sd": g.dice_mean.std(),
            "hd95": g.hd95_mean.mean(),
            "hd95_sd": g.hd95_mean.std(),
            "params": g.params.mean(),
            "gmacs": g.gmacs.mean(),
        }
        if kd != "none":
            base = runs[(runs.model == model) & (runs.kd == "none")]
            row["delta_dice"] = g.dice_mean.mean() - base.dice_mean.mean()
            row["delta_hd95"] = g.hd95_mean.mean() - base.hd95_mean.mean()
            treated = case_dice.loc[list(g.run_id)].groupby("case").mean()
            control = case_dice.loc[list(base.run_id)].groupby("case").mean()
            ok = treated.notna() & control.notna()
            row["p"] = wilcoxon(treated[ok], control[ok]).pvalue
        rows.append(row)
    return pd.DataFrame(rows).set_index(["model", "kd"])


def test_main_csv_holds_the_store_numbers_and_p_values(report) -> None:
    store, rep = report
    table = pd.read_csv(rep.out_dir / "main_table.csv").set_index(["model", "kd"])
    expected = _expected(store)
    assert sorted(table.index) == sorted(expected.index) and len(table) == 7
    for key, exp in expected.iterrows():
        got = table.loc[key]
        assert got.n_seeds == 2 and got.seeds == "0,1" and got.dice_std_over == "seeds"
        assert got.dice_mean == pytest.approx(exp.dice) and got.dice_std == pytest.approx(exp.dice_sd)
        assert got.hd95_mean == pytest.approx(exp.hd95) and got.hd95_std == pytest.approx(exp.hd95_sd)
        assert got.params == exp.params and got.gmacs == pytest.approx(exp.gmacs)
        if key[1] == "none":
            assert math.isnan(got.delta_dice) and math.isnan(got.p_wilcoxon)
        else:
            assert got.delta_dice == pytest.approx(exp.delta_dice) and got.delta_hd95 == pytest.approx(exp.delta_hd95)
            assert got.p_wilcoxon == pytest.approx(exp.p) and got.n_pairs == N_CASES
    assert table.loc[("lcovnet", "ca"), "p_wilcoxon"] < 0.05  # every case gains
    assert table.loc[("lcovnet_small", "none"), "n_missed"] == 1


def test_markdown_and_html_show_the_formatted_numbers(report) -> None:
    store, rep = report
    md = (rep.out_dir / "report.md").read_text(encoding="utf-8")
    page = (rep.out_dir / "report.html").read_text(encoding="utf-8")
    for (model, kd), exp in _expected(store).iterrows():
        cell = f"{exp.dice:.4f} ± {exp.dice_sd:.4f}"
        assert cell in md and cell in page, (model, kd)
        assert f"{exp.hd95:.2f} ± {exp.hd95_sd:.2f}" in md
        if kd != "none":
            mark = "**" if exp.p < 0.01 else "*" if exp.p < 0.05 else ""
            assert f"| {exp.delta_dice:+.4f}{mark} " in md
    # A store from before data, widths and the latency machine were recorded still reads, and says so.
    assert (
        "## synthetic / preset smoke\n\n- Data: synthetic or real: not recorded\n"
        "- Protocol: iterations 40, training patch 32x64x64; widths not recorded\n"
        "- Latency machine: not recorded"
    ) in md
    assert "- HD95 definition: medpy_pooled_p95\n- torch: 2.13.0\n" in md
    assert (
        "| lcovnet_small | ca   | unet3d    | 2 seeds | 0.310        | 4.25    | 32x64x64 | 11.5 @ cpu (2 threads)  |"
    ) in md
    assert "peak mem: the memory one forward pass needs beyond what the process already held" in md
    assert md.count("![") == 5 and (rep.out_dir / "plots" / "synthetic__smoke__pareto.svg").is_file()
    assert page.count('src="data:image/png;base64,') == 5 and 'src="plots/' not in page


def test_per_organ_tables_hold_means_over_seeds(report) -> None:
    store, rep = report
    organs = pd.read_csv(rep.out_dir / "per_organ.csv")
    summaries = [s for s in store.summaries() if s.model == "lcovnet" and s.kd == "ms"]
    want = np.mean([s.per_organ["spleen"]["dice"] for s in summaries])
    got = organs[(organs.model == "lcovnet") & (organs.kd == "ms") & (organs.organ == "spleen")].dice.item()
    assert got == pytest.approx(want)
    md = (rep.out_dir / "report.md").read_text(encoding="utf-8")
    assert "| run | liver" in md.replace("  ", " ") or "| run " in md
    assert f"{want:.4f}" in md.split("### Per-organ Dice")[1].split("###")[0]


def test_latex_escapes_names_and_uses_pm(report) -> None:
    store, rep = report
    tex = (rep.out_dir / "tables.tex").read_text(encoding="utf-8")
    exp = _expected(store).loc[("lcovnet_small", "ms")]
    assert r"lcovnet\_small" in tex and "lcovnet_small" not in tex
    assert rf"{exp.dice:.4f} $\pm$ {exp.dice_sd:.4f}" in tex
    assert tex.count(r"\begin{table}") == 3 and r"$\Delta$Dice" in tex


def test_figures_are_images_holding_the_plotted_points(report) -> None:
    store, rep = report
    plots = {p.name: p for p in rep.groups[0].plots}
    assert sorted(plots) == ["case_dice", "kd_gain", "organ_dice", "pareto", "training"]
    for plot in plots.values():
        with Image.open(plot.png) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 300
        assert plot.svg.read_text(encoding="utf-8").lstrip().startswith("<?xml")
    expected = _expected(store)
    pareto = plots["pareto"].data
    assert len(pareto["gmacs"]["x"]) == 7 and len(pareto["latency_ms_median"]["x"]) == 7
    points = dict(zip(pareto["gmacs"]["labels"], zip(pareto["gmacs"]["x"], pareto["gmacs"]["y"])))
    assert points["lcovnet+ca"] == pytest.approx((12.5, expected.loc[("lcovnet", "ca")].dice))
    front = [pareto["gmacs"]["labels"][i] for i in pareto["gmacs"]["front"]]
    assert front[0].startswith("lcovnet_small") and front[-1] == "unet3d"
    heat = plots["organ_dice"].data
    assert heat["matrix"].shape == (7, 3) and heat["organs"] == ORGANS
    assert sorted(plots["kd_gain"].data) == ["lcovnet", "lcovnet_small"]
    assert plots["kd_gain"].data["lcovnet"]["ca"] == pytest.approx(expected.loc[("lcovnet", "ca")].delta_dice)
    assert len(plots["training"].data["loss"]) == 14 and len(plots["training"].data["val_dice"]) == 14
    assert all(len(x) == 4 for x, _ in plots["training"].data["val_dice"].values())
    boxes = plots["case_dice"].data
    assert len(boxes) == 7 and all(len(v) == N_CASES * len(SEEDS) for v in boxes.values())


def test_header_states_data_widths_and_the_machine_beside_each_latency(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    per_case = _per_case(0.7, np.random.default_rng(0), missed=False)
    for model, load in (("lcovnet", 0.4), ("unet3d", 9.0)):
        summary = _summary(model, "none", None, 0, 100_000, 1.0, per_case)
        summary.update(latency_device="cpu", latency_cpu="Intel(R) Xeon(R) Test CPU", latency_threads=2,
                       latency_load_avg=load, latency_cpu_count=2, dataset_synthetic=True, n_train=16, n_val=2,
                       n_test=6, base_channels=8)  # fmt: skip
        _record(store, make_run_id(model, "none", None, 0, "synthetic", "3f2a9c1b"), summary, per_case)
    md = (build_report(store, tmp_path / "report", formats=["md"], progress=False).out_dir / "report.md").read_text(
        encoding="utf-8"
    )
    assert (
        "- Data: synthetic (procedural abdominal CT from `bench data synth`, not real patients); 16 training, "
        "2 validation and 6 test cases\n" in md
    )
    assert "widths reduced to base_channels=8" in md and "full-width counts in the README" in md
    assert "- Latency machine: Intel(R) Xeon(R) Test CPU (2 logical CPUs)" in md
    assert "| 5.0 @ cpu, 2 thr, load 0.4 " in md and "| 5.0 @ cpu, 2 thr, load 9.0 (busy) |" in md
    assert "| 1 seed  |" in md


def test_runs_missing_metrics_show_a_dash_and_do_not_break_the_report(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    empty = pd.DataFrame(columns=["case", "label", "name", "dice", "hd95", "status"])
    _record(
        store, "bare", {"model": "dmfnet", "kd": "none", "seed": 0, "dataset": "synthetic", "preset": "smoke"}, empty
    )
    _record(
        store,
        "nulls",
        {
            "model": "espnet",
            "kd": "ca",
            "teacher": None,
            "dice_mean": None,
            "gmacs": None,
            "per_organ": None,
            "patch": None,
        },
        empty,
    )
    rep = build_report(store, tmp_path / "out", progress=False)
    md = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "| dmfnet  | none | -         | 1 seed  | -            | -       | -       |" in md
    assert "| espnet  | ca   | -         | 1 seed  |" in md
    assert "## - / preset -" in md
    assert rep.groups[0].plots == [] and rep.groups[1].plots == []
    table = pd.read_csv(tmp_path / "out" / "main_table.csv")
    assert table.dice_mean.isna().all() and table.params.isna().all()
    assert "dmfnet" in rep.terminal_table()


def test_empty_or_missing_store_exits_2_naming_the_directory(tmp_path: Path, capsys) -> None:
    root = tmp_path / "empty"
    ResultsStore(root)
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "report", "--results", str(root)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert (
        proc.stderr == f"bench report: error: results store {root} has no complete runs (no runs/*/summary.json); "
        "run `bench run` first or pass --results DIR\n"
    )
    assert main(["report", "--results", str(tmp_path / "missing")]) == 2
    assert f"results store {tmp_path / 'missing'} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists() and not (root / "report").exists()


def test_cli_writes_the_chosen_formats_and_prints_a_table(tmp_path: Path, capsys) -> None:
    make_fake_store(tmp_path / "results")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "report",
            "--results",
            str(tmp_path / "results"),
            "--out",
            str(tmp_path / "rep"),
            "--format",
            "csv,tex",
        ],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == [
        ".bench-report.json",  # what the report wrote, so that it never replaces a file of the user's
        "kd_effect.csv",  # empty here: the KD runs name no teacher run
        "main_table.csv",
        "per_organ.csv",
        "runs.csv",
        "tables.tex",
    ]
    assert "synthetic / preset smoke" in proc.stdout and "lcovnet_small" in proc.stdout and "ΔDice" in proc.stdout

    assert main(["report", "--results", str(tmp_path / "results"), "--format", "md,pdf"]) == 2
    assert "--format takes a comma-separated subset of md,csv,tex,html" in capsys.readouterr().err


def test_wilcoxon_copes_with_no_difference_and_too_few_pairs() -> None:
    same = pd.Series([0.5, 0.6, 0.7], index=["a", "b", "c"])
    assert paired_wilcoxon(same, same).p == 1.0
    one = paired_wilcoxon(pd.Series([0.5], index=["a"]), pd.Series([0.4], index=["a"]))
    assert one.p is None and one.n == 1 and "at least 2" in one.note
    gaps = paired_wilcoxon(pd.Series([0.9, np.nan, 0.8]), pd.Series([0.1, 0.2, np.nan]))
    assert gaps.p is None and gaps.n == 1
    x, y = pd.Series([0.9, 0.8, 0.85, 0.7, 0.95, 0.6]), pd.Series([0.8, 0.75, 0.8, 0.72, 0.9, 0.5])
    assert paired_wilcoxon(x, y).p == pytest.approx(wilcoxon(x, y).pvalue)


def test_pareto_front_keeps_only_undominated_points() -> None:
    cost = [10.0, 5.0, 20.0, 5.0, 30.0]
    score = [0.80, 0.70, 0.79, 0.75, 0.90]
    assert pareto_front(cost, score) == [3, 0, 4]
    assert pareto_front([], []) == []


def test_whole_ct_column_and_deployment_table_from_export_records(tmp_path: Path) -> None:
    import json

    store = ResultsStore(tmp_path / "results")
    per_case = _per_case(0.7, np.random.default_rng(0), missed=False)
    old = _summary("lcovnet", "none", None, 0, 1_020_000, 12.5, per_case)  # recorded before whole-CT times existed
    new = {**_summary("unet3d", "none", None, 0, 15_300_000, 310.0, per_case), "whole_ct_seconds": 41.3}
    for summary in (old, new):
        _record(store, make_run_id(summary["model"], "none", None, 0, "synthetic", "3f2a9c1b"), summary, per_case)
    export = {"torch_latency_ms_median": 812.0, "torch_gmacs_per_s": 80.0, "peak_gmacs_per_s": {"fp32": 200.0},
              "variants": {
        "fp32": {"size_mb": 57.17, "latency_ms_median": 640.5, "dice": 0.7012, "max_abs_logit_diff": 2.5e-5,
                 "gmacs_per_s": 101.5, "peak_share": 0.5076},
        "int8": {"size_mb": 14.38, "latency_ms_median": 301.25, "dice": 0.6951}}}  # fmt: skip
    openvino = {"variants": {"bf16": {"runtime": "openvino", "precision": "bf16", "latency_ms_median": 120.0,
                                      "gmacs_per_s": 541.7, "peak_share": 0.25, "dice": 0.7011}}}  # fmt: skip
    run_dir = store.run_dir(make_run_id("unet3d", "none", None, 0, "synthetic", "3f2a9c1b"))
    (run_dir / "export.json").write_text(json.dumps(export))
    (run_dir / "export.openvino.json").write_text(json.dumps(openvino))
    build_report(store, tmp_path / "out", formats=["md", "csv"], progress=False)
    md = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    main = md.split("### Main table")[1].split("###")[0]
    header = [c.strip() for c in main.strip().splitlines()[0].strip("|").split("|")]
    column = header.index("whole CT (s)")
    assert header[column - 1] == "latency ms @ device"
    cells = {row.split("|")[1].strip(): row.split("|")[column + 1].strip() for row in main.strip().splitlines()[2:]}
    assert cells == {"lcovnet": "-", "unet3d": "41.3"}
    deployment = pd.read_csv(tmp_path / "out" / "deployment.csv")
    rows = deployment.astype(str).to_dict("records")
    assert [(r["runtime"], r["precision"]) for r in rows] == [
        ("pytorch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "bf16")]  # fmt: skip
    assert {r["run"] for r in rows} == {"unet3d s0"} and {r["params (M)"] for r in rows} == {"15.3"}
    torch_row, fp32, int8, bf16 = rows
    assert (torch_row["patch ms"], torch_row["GMAC/s"], torch_row["% of peak"]) == ("812.0", "80.0", "40.0")
    assert (torch_row["whole CT (s) CPU"], torch_row["whole CT (s) GPU"]) == ("41.3", "-")
    assert torch_row["Dice"] == str(round(new["dice_mean"], 4)) and fp32["whole CT (s) CPU"] == "-"
    assert [fp32[k] for k in ("size (MB)", "patch ms", "GMAC/s", "% of peak")] == ["57.17", "640.5", "101.5", "50.8"]
    assert (fp32["max |Δlogit|"], fp32["Dice"]) == ("2.50e-05", "0.7012")
    assert (int8["size (MB)"], int8["patch ms"], int8["GMAC/s"], int8["Dice"]) == ("14.38", "301.2", "-", "0.6951")
    assert (bf16["patch ms"], bf16["GMAC/s"], bf16["% of peak"], bf16["Dice"]) == ("120.0", "541.7", "25.0", "0.7011")
    assert "## Deployment" in md


def test_folds_of_a_cross_validation_are_pooled_per_seed_with_each_case_once(tmp_path):
    store = ResultsStore(tmp_path / "results")
    rng = np.random.default_rng(0)
    dice = {}
    for fold, base in ((0, 0.70), (1, 0.80)):
        per_case = _per_case(base, rng, missed=False)
        summary = _summary("lcovnet", "none", None, 0, 1000, 1.0, per_case)
        run_id = make_run_id("lcovnet", "none", None, 0, "synthetic", "3f2a9c1b") + (f"__f{fold}" if fold else "")
        summary.update(run_id=run_id, fold=fold, n_cases=N_CASES + 2 * fold)  # fold 1 tests 2 cases more
        dice[fold] = summary["dice_mean"]
        _record(store, run_id, summary, per_case)
    report = build_report(store, tmp_path / "report", formats=("md", "csv"), progress=False)
    (row,) = report.agg.to_dict("records")
    weights = (N_CASES, N_CASES + 2)
    assert row["dice_mean"] == pytest.approx((dice[0] * weights[0] + dice[1] * weights[1]) / sum(weights))
    assert row["n_cases"] == 2 * N_CASES + 2 and row["n_seeds"] == 1 and row["folds"] == "0,1"
    assert row["fold_dice_std"] == pytest.approx(np.std([dice[0], dice[1]], ddof=1))
    assert f"| 1 seed x 2 folds (±{row['fold_dice_std']:.3f}) |" in (tmp_path / "report" / "report.md").read_text(
        encoding="utf-8"
    )
