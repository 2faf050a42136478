"""Experiment files: loading, checking, resolving and writing back."""

from pathlib import Path

import pytest

from bench.components.syntax import Component
from bench.errors import BenchError
from bench.experiment import load_experiment, save_experiment

EXAMPLES = sorted((Path(__file__).parents[2] / "experiments").glob("*.toml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_shipped_examples_load_and_round_trip(path, tmp_path):
    experiment = load_experiment(path)
    save_experiment(experiment, tmp_path / "saved.toml")
    assert load_experiment(tmp_path / "saved.toml") == experiment


def test_shipped_examples_are_the_acf_bckd_tables_the_kd_comparison_and_the_ca_weight_ablation():
    names = [p.name for p in EXAMPLES]
    assert names == ["acf_bckd_table.toml", "acf_bckd_table_cpu.toml", "ca_weight_ablation.toml",
                     "paper_kd_comparison.toml"]  # fmt: skip
    ablation = load_experiment(EXAMPLES[names.index("ca_weight_ablation.toml")])
    assert [c.kwargs.get("weight") for c in ablation.kd_components()] == [None, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]
    assert set(ablation.swept().values()) == {("ca.weight",)}


def test_an_experiment_resolves_every_default(tmp_path):
    experiment = load_experiment(write(tmp_path, 'models = ["lcovnet:base_channels=4"]\n'))
    assert experiment.model_components() == [Component("lcovnet", {"base_channels": 4})]
    assert experiment.kd_components() == [Component("none")]
    assert experiment.teacher_components() == [Component("unet3d")]  # the preset's teacher key
    assert (experiment.seeds, experiment.folds, experiment.preset, experiment.teacher_preset) == \
        ([0], [0], "default", "default")  # fmt: skip


def test_sweeps_arguments_teacher_table_and_overrides_round_trip(tmp_path):
    path = write(
        tmp_path,
        """
description = "weights, \\"quoted\\""
preset = "smoke"
seeds = [0, 2]
folds = [1]
models = ["lcovnet", "nnunet:base_channels=8|16"]
kd = ["none", "ca:weight=0.1|0.2+ms:norm=global", "kd:tau=4"]

[overrides]
iterations = 20
patch = [32, 32, 32]
model_kwargs = { unet3d = { dropout = 0.0 } }

[teacher]
models = ["unet3d:base_channels=8"]
preset = "default"

[teacher.overrides]
iterations = 40
""",
    )
    experiment = load_experiment(path)
    assert [str(c) for c in experiment.kd_components()] == [
        "none",
        "ca:weight=0.1+ms:norm=global",
        "ca:weight=0.2+ms:norm=global",
        "kd:tau=4.0",
    ]
    assert experiment.swept()["nnunet:base_channels=16"] == ("nnunet.base_channels",)
    assert experiment.teacher_overrides == {"iterations": 40, "patch": [32, 32, 32],
                                            "model_kwargs": {"unet3d": {"dropout": 0.0}}}  # fmt: skip
    assert experiment.config().iterations == 20
    assert experiment.teacher_config().iterations == 40
    save_experiment(experiment, tmp_path / "saved.toml")
    assert load_experiment(tmp_path / "saved.toml") == experiment


def test_a_preset_file_is_found_next_to_the_experiment(tmp_path):
    (tmp_path / "mine.toml").write_text("iterations = 3\n")
    experiment = load_experiment(write(tmp_path, 'preset = "mine.toml"\nmodels = ["lcovnet"]\n'))
    assert experiment.preset == str((tmp_path / "mine.toml").resolve())
    assert experiment.config().iterations == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('models = ["lcovnet"]\nseed = [1]\n', "unknown key 'seed'; valid keys: description, preset, seeds"),
        ('kd = ["ca"]\n', "missing key models"),
        ('models = "lcovnet"\n', "models must be a non-empty list of strings"),
        ('models = ["lcovnet,unet3d"]\n', "models[0]: one entry per list item"),
        ('models = ["lcovnet"]\nkd = ["none", "ca:wieght=0.1"]\n', "kd[1]: ca: 'wieght' is not an argument; did you"),
        ('models = ["lcovnet"]\nseeds = []\n', "seeds must be a non-empty list of integers"),
        ('models = ["lcovnet"]\nfolds = [5]\n', "folds must be below the preset's folds = 5"),
        ('models = ["lcovnet"]\n[overrides]\niteratons = 5\n', "unknown preset key 'iteratons' in [overrides]"),
        ('models = ["lcovnet"]\n[teacher.overrides]\nlr = -1\n', "[teacher.overrides]: preset key lr must be"),
        ('models = ["lcovnet"]\n[teacher]\nmodel = ["unet3d"]\n', "unknown key 'teacher.model'"),
        ('models = ["lcovnet"]\n[teacher]\nmodels = ["unet3e"]\n', "teacher.models[0]: unknown model 'unet3e'"),
        ('models = ["lcovnet"]\npreset = "nope"\n', "preset 'nope' is neither a shipped preset"),
        ("models = [\n", "is not valid TOML"),
    ],
)
def test_errors_are_one_line_naming_the_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(BenchError) as err:
        load_experiment(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_syntax_only_loading_does_not_check_names(tmp_path):
    path = write(tmp_path, 'models = ["notamodel:x=1"]\n')
    assert load_experiment(path, check=False).model_components() == [Component("notamodel", {"x": 1})]
    with pytest.raises(BenchError, match="unknown model 'notamodel'"):
        load_experiment(path)


def test_syntax_only_loading_imports_neither_torch_nor_pandas():
    import subprocess
    import sys

    code = ("import sys; from bench.experiment import load_experiment; "
            f"load_experiment({str(EXAMPLES[0])!r}, check=False); "
            "print(sorted({'torch', 'pandas'} & set(sys.modules)))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.stdout.strip() == "[]", proc.stderr


def test_set_items_apply_on_top_of_the_files_overrides_teacher_items_to_the_teachers_alone(tmp_path):
    path = write(tmp_path, 'preset = "smoke"\nmodels = ["lcovnet"]\n[overrides]\niterations = 20\nlr = 0.01\n')
    experiment = load_experiment(path).with_overrides(["iterations=5", "teacher.iterations=7", "patch=[16,16,16]"])
    assert (experiment.config().iterations, experiment.config().lr, experiment.config().patch) == (5, 0.01, [16] * 3)
    assert (experiment.teacher_config().iterations, experiment.teacher_config().patch) == (7, [16, 16, 16])
    save_experiment(experiment, tmp_path / "saved.toml")
    assert load_experiment(tmp_path / "saved.toml") == experiment  # the saved file records what ran
    assert load_experiment(path).with_overrides([]) == load_experiment(path)


def test_a_bad_set_item_on_an_experiment_is_an_error_naming_it(tmp_path):
    experiment = load_experiment(write(tmp_path, 'preset = "smoke"\nmodels = ["lcovnet"]\n'))
    with pytest.raises(BenchError, match="unknown preset key 'iteration'"):
        experiment.with_overrides(["iteration=5"])
