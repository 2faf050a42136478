"""The stages of one cell, called in this process with plain arguments (no `bench` subprocess): inputs, student,
training, evaluation, records, and a whole cell through ``run_cell`` with a KD cell taught by the teacher it
trained first."""

from __future__ import annotations

import json

import pytest
import torch

from bench.deploy.spec import read_spec
from bench.errors import BenchError
from bench.grid.plan import plan_cells
from bench.grid.progress import GridProgress
from bench.grid.spec import GridSpec
from bench.networks import model_kwargs, own_model_kwargs
from bench.pipeline.cell import run_cell
from bench.pipeline.checks import check_grid
from bench.pipeline.context import GridContext
from bench.pipeline.evaluate import evaluate_test
from bench.pipeline.inputs import load_checked_dataset, prepare_fold
from bench.pipeline.record import kd_hparams, write_start_records
from bench.pipeline.train import build_student, keep_final_weights, own_kd_kwargs, train_student
from bench.store import ResultsStore
from bench.training.config import load_config
from bench.training.distributed import DistContext
from bench.training.trainer import seed_everything

TINY = ['spacing="keep"', "patch=[32, 32, 32]", "base_channels=4", "batch_size=1", "val_cases=1", "iterations=2",
        "val_every=2", "profile_runs=1", "profile_warmup=0"]  # fmt: skip


@pytest.fixture(scope="module")
def config():
    return load_config("smoke", TINY)


@pytest.fixture(scope="module")
def inputs(tiny_dataset, config, tmp_path_factory):
    dataset = load_checked_dataset(tiny_dataset, None)
    return prepare_fold(dataset, config, 0, tmp_path_factory.mktemp("root"), progress=False)


def test_inputs_split_the_tiny_set_and_keep_the_presets_organs(inputs, tiny_dataset):
    data = inputs.data
    assert data.counts == (len(inputs.train), len(inputs.val), len(inputs.test)) and len(inputs.test) == 2
    assert data.labels == {0: "background", 1: "liver", 2: "spleen", 3: "kidney_left", 4: "kidney_right", 5: "stomach"}
    assert data.num_classes == 6 and data.in_channels == 1 and data.synthetic
    assert set(data.split_ids[1]) == {c.case_id for c in inputs.test}
    assert not set(data.split_ids[0]) & set(data.split_ids[1])


def test_own_model_arguments_go_over_the_presets_and_channels_replace_its_width(config):
    assert model_kwargs("lcovnet", config) == {"base_channels": 4}
    assert model_kwargs("unet3d", config) == {"base_channels": 4, "dropout": 0.0}
    assert own_model_kwargs("unet3d", config, {"channels": [4, 8, 16, 32, 64]}) == {
        "dropout": 0.0, "channels": [4, 8, 16, 32, 64]}  # fmt: skip


def test_a_seeded_student_is_built_with_the_same_weights_twice(inputs, config, tmp_path):
    store = ResultsStore(tmp_path, index=False)
    cell = plan_cells(GridSpec(["lcovnet"], ["none"], config, "smoke"), inputs.data.name)[0]
    weights = []
    for _ in range(2):
        seed_everything(0, True)
        weights.append(build_student(cell, config, inputs.data, None, store).model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_train_evaluate_and_record_stages_leave_the_runs_files(inputs, config, tmp_path):
    store = ResultsStore(tmp_path, index=False)
    cell = plan_cells(GridSpec(["lcovnet"], ["none"], config, "smoke"), inputs.data.name)[0]
    run_dir = store.run_dir(cell.run_id)
    seed_everything(cell.seed, True)
    student = build_student(cell, config, inputs.data, None, store)
    write_start_records(store, cell, student.kwargs, None, student.kd_hparams, inputs.data, config, "smoke")
    result = train_student(student, None, config, inputs, device=torch.device("cpu"), run_dir=run_dir, seed=0,
                           dist=DistContext(), label="test")  # fmt: skip
    keep_final_weights(student, result, store, cell.run_id)
    per_case = evaluate_test(student.model, inputs.data, inputs.test, config, torch.device("cpu"))

    assert result.iterations == 2 and store.paths(cell.run_id).weights.is_file()
    record = json.loads(store.paths(cell.run_id).config.read_text())
    assert record["model"] == "lcovnet" and record["kd"] == "none" and record["preset_hash"] == config.hash()
    spec = read_spec(store.paths(cell.run_id).spec)
    assert (spec.model, spec.run_id, spec.num_classes, spec.patch, spec.model_kwargs) == (
        "lcovnet", cell.run_id, 6, [32, 32, 32], {"base_channels": 4})  # fmt: skip
    assert spec.cases == {"train": inputs.data.split_ids[0], "test": inputs.data.split_ids[1]}
    assert set(per_case["case"]) == {c.case_id for c in inputs.test}
    assert sorted(per_case["label"].unique()) == [1, 2, 3, 4, 5]
    assert per_case["dice"].between(0, 1).all()


def test_kd_hparams_record_a_compositions_parts_by_name():
    import kd_methods

    method = kd_methods.create_kd_method("ca+ms", [4, 8], [4, 8], 3)
    hparams = kd_hparams(method)
    assert set(hparams) == {"ca", "ms"} and all(isinstance(v, dict) and v for v in hparams.values())


def test_run_cell_trains_a_teacher_then_a_kd_cell_from_its_weights_and_skips_a_complete_cell(
    tiny_dataset, config, tmp_path
):
    spec = GridSpec(["lcovnet"], ["ca"], config, "smoke", data=tiny_dataset, teachers=["lcovnet"],
                    results=tmp_path / "res", device="cpu", whole_volume=None)  # fmt: skip
    check_grid(spec)
    grid = GridContext.open(spec)
    inputs, cells = grid.prepare()
    assert [c.kd for c in cells] == ["none", "ca"] and cells[1].needs == (cells[0].run_id,)
    progress = GridProgress([c.planned for c in cells], set())
    for cell in cells:
        run_cell(cell, inputs[cell.fold], grid, progress)
    by_kd = {s.kd: s for s in grid.store.summaries()}
    assert by_kd["ca"].teacher_run == cells[0].run_id and by_kd["ca"].first_step["kd_loss"] > 0
    # the first step's probes: the KD term reaches the student's weights; the optimiser holds the student's parameters
    assert by_kd["ca"].first_step["kd_grad_norm"] > 0 and by_kd["none"].first_step["kd_grad_norm"] == 0
    assert by_kd["ca"].first_step["optimized_params"] == by_kd["ca"].params == by_kd["none"].params
    assert grid.complete(cells) == {c.run_id for c in cells}

    again = GridProgress([c.planned for c in cells], grid.complete(cells))
    run_cell(cells[1], inputs[0], grid, again)
    assert again.outcomes[cells[1].run_id].status == "complete, skipped"


def test_a_kd_methods_preset_arguments_sit_under_its_own_and_reach_each_part_of_a_composition():
    config = load_config("smoke", ['kd_kwargs={ca={weight=0.5}, ms={weight=2.0, norm="global"}}'])
    assert own_kd_kwargs("ca", config, {}) == {"weight": 0.5}
    assert own_kd_kwargs("ca", config, {"weight": 0.1}) == {"weight": 0.1}
    assert own_kd_kwargs("kd", config, {"tau": 4.0}) == {"tau": 4.0}
    assert own_kd_kwargs("ca+ms", config, {}) == {"ca": {"weight": 0.5}, "ms": {"weight": 2.0, "norm": "global"}}
    # an argument given for every part overrides each part's preset value; a part's own scoped one overrides both
    own = {"weight": 1.0, "ms": {"norm": "sample"}}
    assert own_kd_kwargs("ca+ms", config, own) == {"weight": 1.0, "ms": {"norm": "sample"}}


def test_a_preset_kd_argument_the_method_does_not_take_is_refused_before_training():
    bad = load_config("smoke", [*TINY, "kd_kwargs={ca={wieght=0.5}}"])
    spec = GridSpec(models=["lcovnet"], kds=["none", "ca"], config=bad, preset="smoke")
    with pytest.raises(BenchError, match=r"preset key kd_kwargs.ca: ca: 'wieght' is not an argument; did you mean"):
        check_grid(spec)
