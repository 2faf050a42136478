"""The report's ablation view: a table and a figure per swept KD or model argument, from summaries written straight
into a results store (no training)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.report import build_report
from bench.report.ablation import component_args
from bench.store import ResultsStore, make_run_id
from tests.bench.test_report import _per_case, _record, _summary

SEEDS = [0, 1]
TEACHER = "unet3d"
# (model text, model kwargs, KD text, KD kwargs, seeds, Dice lift): lcovnet without KD, a CA weight sweep over two
# seeds, an MS norm sweep (text values) on one seed, and an nnunet width sweep without KD.
CONFIGS = [
    ("lcovnet", {}, "none", {}, SEEDS, 0.0),
    ("lcovnet", {}, "ca:weight=0.05", {"weight": 0.05}, SEEDS, 0.01),
    ("lcovnet", {}, "ca:weight=0.1", {"weight": 0.1}, SEEDS, 0.04),
    ("lcovnet", {}, "ca:weight=0.2", {"weight": 0.2}, SEEDS, 0.02),
    ("lcovnet", {}, "ms:norm=global", {"norm": "global"}, [0], 0.03),
    ("lcovnet", {}, "ms:norm=sample", {"norm": "sample"}, [0], -0.01),
    ("nnunet:base_channels=8", {"base_channels": 8}, "none", {}, SEEDS, 0.05),
    ("nnunet:base_channels=16", {"base_channels": 16}, "none", {}, SEEDS, 0.08),
]


def _store(root: Path) -> ResultsStore:
    store = ResultsStore(root)
    for i, (model, model_kwargs, kd, kd_kwargs, seeds, lift) in enumerate(CONFIGS):
        teacher = None if kd == "none" else TEACHER
        for seed in seeds:
            per_case = _per_case(0.7 + lift + 0.01 * seed, np.random.default_rng(10 * i + seed), missed=False)
            summary = _summary(model, kd, teacher, seed, 1_000_000, 10.0, per_case)
            summary.update(model_kwargs=model_kwargs, kd_kwargs=kd_kwargs)
            run_id = make_run_id(model, kd, teacher, seed, "synthetic", "3f2a9c1b")
            _record(store, run_id, summary, per_case)
    return store


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("results")
    store = _store(root)
    return store, build_report(store, root / "report", progress=False)


def _dice(store: ResultsStore, model: str, kd: str) -> pd.Series:
    """The runs' own ``dice_mean`` over seeds, straight from the summaries."""
    runs = pd.DataFrame([s.to_dict() for s in store.summaries()])
    return runs[(runs.model == model) & (runs.kd == kd)].set_index("seed")["dice_mean"]


def test_one_ablation_per_swept_key_and_student(report) -> None:
    _, rep = report
    (group,) = rep.groups
    assert [(a.kind, a.method, a.key, a.student) for a in group.ablations] == [
        ("kd", "ca", "weight", "lcovnet"),
        ("kd", "ms", "norm", "lcovnet"),
        ("model", "nnunet", "base_channels", ""),
    ]


def test_kd_sweep_csv_holds_values_in_order_with_the_no_kd_reference_first(report) -> None:
    store, rep = report
    table = pd.read_csv(rep.out_dir / "ablation" / "synthetic__smoke__ablation__kd__lcovnet__ca__weight.csv")
    assert table["reference"].tolist() == [True, False, False, False]
    assert table["kd"].tolist() == ["none", "ca:weight=0.05", "ca:weight=0.1", "ca:weight=0.2"]
    assert table["value"].iloc[1:].tolist() == [0.05, 0.1, 0.2] and np.isnan(table["value"].iloc[0])
    for (_, row), kd in zip(table.iterrows(), table["kd"]):
        dice = _dice(store, "lcovnet", kd)
        assert row["dice_mean"] == pytest.approx(dice.mean())
        assert row["dice_std"] == pytest.approx(dice.std(ddof=1))
        assert row["n_seeds"] == 2
    base = _dice(store, "lcovnet", "none")
    best = _dice(store, "lcovnet", "ca:weight=0.1")
    assert table.loc[2, "delta_dice"] == pytest.approx((best - base).mean())
    assert table.loc[2, "delta_dice"] == pytest.approx(0.04, abs=0.01)


def test_kd_sweep_figure_draws_the_values_and_the_no_kd_line(report) -> None:
    store, rep = report
    ablation = rep.groups[0].ablations[0]
    plot = ablation.plot
    assert plot.png.exists() and plot.svg.exists()
    with Image.open(plot.png) as image:
        assert image.size[0] > 300
    assert plot.data["reference"] == pytest.approx(_dice(store, "lcovnet", "none").mean())
    (series,) = plot.data["series"].values()
    assert series["x"] == [0.05, 0.1, 0.2]
    expected = [_dice(store, "lcovnet", f"ca:weight={w}").mean() for w in ("0.05", "0.1", "0.2")]
    assert series["dice"] == pytest.approx(expected)


def test_markdown_section_lists_the_reference_and_each_value(report) -> None:
    store, rep = report
    md = (rep.out_dir / "report.md").read_text(encoding="utf-8")
    section = md.split("### Ablation: ca weight (student lcovnet)\n")[1].split("###")[0]
    base = _dice(store, "lcovnet", "none")
    mid = _dice(store, "lcovnet", "ca:weight=0.1")
    assert "| no KD (reference) | lcovnet " in section
    assert f"| {base.mean():.4f} ± {base.std():.4f} |" in section
    assert f"| 0.1               | lcovnet+ca:weight=0.1  | 2 seeds | {mid.mean():.4f} ± {mid.std():.4f} |" in section
    figure = "plots/synthetic__smoke__ablation__kd__lcovnet__ca__weight.png"
    assert f"![Ablation: ca weight (student lcovnet)]({figure})" in section
    html = (rep.out_dir / "report.html").read_text(encoding="utf-8")
    assert "<h3>Ablation: ca weight (student lcovnet)</h3>" in html
    tex = (rep.out_dir / "tables.tex").read_text(encoding="utf-8")
    assert "\\caption{Ablation: ca weight (student lcovnet): synthetic / preset smoke}" in tex


def test_text_values_are_categories_without_seed_spread_for_one_seed(report) -> None:
    store, rep = report
    ablation = rep.groups[0].ablations[1]
    assert not ablation.numeric
    (series,) = ablation.plot.data["series"].values()
    assert series["x"] == [0, 1]
    expected = [_dice(store, "lcovnet", f"ms:norm={norm}").iloc[0] for norm in ("global", "sample")]
    assert series["dice"] == pytest.approx(expected)
    assert np.isnan(series["dice_std"]).all()
    table = pd.read_csv(rep.out_dir / "ablation" / "synthetic__smoke__ablation__kd__lcovnet__ms__norm.csv")
    assert table["value"].fillna("").tolist() == ["", "global", "sample"]
    assert table["dice_std"].iloc[1:].isna().all()  # one seed: no spread over seeds


def test_model_sweep_draws_each_kd_method_as_a_line(report) -> None:
    store, rep = report
    ablation = rep.groups[0].ablations[2]
    assert ablation.reference is None and ablation.plot.data["reference"] is None
    assert ablation.points["model"].tolist() == ["nnunet:base_channels=8", "nnunet:base_channels=16"]
    assert list(ablation.plot.data["series"]) == ["no KD"]
    assert ablation.plot.data["series"]["no KD"]["x"] == [8.0, 16.0]
    assert ablation.plot.data["series"]["no KD"]["dice"] == pytest.approx(
        [_dice(store, f"nnunet:base_channels={c}", "none").mean() for c in (8, 16)]
    )


def test_older_summaries_without_arguments_report_without_ablation(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    for kd in ("none", "ca", "ms"):
        per_case = _per_case(0.7, np.random.default_rng(0), missed=False)
        teacher = None if kd == "none" else TEACHER
        _record(
            store,
            make_run_id("lcovnet", kd, teacher, 0, "synthetic", "3f2a9c1b"),
            _summary("lcovnet", kd, teacher, 0, 1_000_000, 10.0, per_case),
            per_case,
        )
    rep = build_report(store, tmp_path / "report", progress=False)
    assert rep.groups[0].ablations == []
    assert "Ablation" not in (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert not (tmp_path / "report" / "ablation").exists()


def test_composition_arguments_are_named_by_part_and_missing_texts_give_none() -> None:
    assert component_args("ca:weight=0.1+ms:norm=global", "kd") == ("ca+ms", {"ca.weight": 0.1, "ms.norm": "global"})
    assert component_args("nnunet:base_channels=16", "model") == ("nnunet", {"base_channels": 16})
    assert component_args("-", "kd") is None
