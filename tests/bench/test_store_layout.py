"""The results store's layout: every path of the store and of a run, from names checked to be one file name, and
the run files the store writes there."""

import json
from pathlib import Path

import pytest

from bench.deploy.spec import DeploySpec, read_spec
from bench.errors import BenchError
from bench.store import ResultsStore
from bench.store_layout import ResultsLayout

RUN_ID = "SegKDSynthAbdomen__lcovnet__kd-ca__t-unet3d__s0__12e8fbfa__f1__a-0d9e8f7a"


def _all_paths(layout: ResultsLayout) -> dict[str, Path]:
    run, job = layout.run(RUN_ID), layout.job(RUN_ID)
    return {
        "index": layout.index, "runs": layout.runs, "jobs": layout.jobs, "cache": layout.cache,
        "report": layout.report, "splits": layout.splits("WORD"), "experiment": layout.experiment("sweep"),
        "run": run.dir, "lock": run.lock, "config": run.config, "env": run.env, "spec": run.spec,
        "train_log": run.train_log, "checkpoint_last": run.checkpoint_last, "checkpoint_best": run.checkpoint_best,
        "weights": run.weights, "predictions": run.predictions, "per_case": run.per_case, "summary": run.summary,
        "export_record": run.export_record, "export_dir": run.export_dir, "job": job.dir, "job_record": job.record,
        "job_error": job.error, "job_log": job.log,
    }  # fmt: skip


def test_every_path_lies_under_the_root_and_names_one_thing(tmp_path: Path) -> None:
    root = tmp_path / "results"
    paths = _all_paths(ResultsLayout(str(root)))
    assert all(root in p.parents for p in paths.values())
    assert len(set(paths.values())) == len(paths)
    assert not root.exists()  # a layout creates nothing


def test_the_names_on_disk_are_the_documented_format(tmp_path: Path) -> None:
    paths = {k: str(p.relative_to(tmp_path)) for k, p in _all_paths(ResultsLayout(tmp_path)).items()}
    run, job = f"runs/{RUN_ID}", f"jobs/{RUN_ID}"
    assert paths == {
        "index": "bench.sqlite", "runs": "runs", "jobs": "jobs", "cache": "cache", "report": "report",
        "splits": "splits/WORD.json", "experiment": "experiments/sweep.toml", "run": run, "lock": f"{run}/.lock",
        "config": f"{run}/config.json", "env": f"{run}/env.json", "spec": f"{run}/preprocessing.json",
        "train_log": f"{run}/train_log.csv", "checkpoint_last": f"{run}/checkpoint_last.pt",
        "checkpoint_best": f"{run}/checkpoint_best.pt", "weights": f"{run}/weights.pt",
        "predictions": f"{run}/predictions", "per_case": f"{run}/per_case.csv", "summary": f"{run}/summary.json",
        "export_record": f"{run}/export.json", "export_dir": f"{run}/export", "job": job,
        "job_record": f"{job}/job.json", "job_error": f"{job}/error.txt", "job_log": f"{job}/log.txt",
    }  # fmt: skip


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "..\\b", "C:x", "x\ny"])
def test_a_name_that_is_not_one_file_name_is_refused_naming_what_it_is(tmp_path: Path, name: str) -> None:
    layout = ResultsLayout(tmp_path)
    for make, what in ((layout.run, "run id"), (layout.job, "run id"), (layout.splits, "data set name"),
                       (layout.experiment, "experiment name")):  # fmt: skip
        with pytest.raises(BenchError, match=f"^{what} .* cannot be used as a file name"):
            make(name)


def test_runs_jobs_and_complete_runs_are_listed_by_id(tmp_path: Path) -> None:
    layout = ResultsLayout(tmp_path)
    assert layout.run_ids() == layout.job_ids() == layout.complete_run_ids() == []
    for run_id in ("b", "a"):
        layout.run(run_id).dir.mkdir(parents=True)
    layout.run("a").summary.write_text("{}")
    layout.job("c").dir.mkdir(parents=True)
    (layout.runs / "stray.txt").write_text("not a run")
    assert (layout.run_ids(), layout.complete_run_ids(), layout.job_ids()) == (["a", "b"], ["a"], ["c"])


def test_the_store_writes_a_runs_files_where_the_layout_puts_them(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    config = {"model": "lcovnet", "kd": "ca", "teacher": "unet3d", "seed": 0, "config": {"patch": (32, 64, 64)}}
    store.write_config(RUN_ID, config)
    store.write_env(RUN_ID, {"host": "node1", "torch": "2.13.0"})
    spec = DeploySpec("lcovnet", 1, 3, {1: "liver", 2: "spleen"}, {"target_spacing": None}, [32, 64, 64], 0.5,
                      run_id=RUN_ID, cases={"train": ["c0"], "test": ["c1"]},
                      ct_stats={"channels": [{"mean": 40.0, "std": 50.0, "p00_5": -9.0, "p99_5": 90.0}]})  # fmt: skip
    store.write_spec(RUN_ID, spec)
    run = store.paths(RUN_ID)
    assert run.config.read_text() == json.dumps({**config, "config": {"patch": [32, 64, 64]}}, indent=2) + "\n"
    assert json.loads(run.env.read_text()) == {"host": "node1", "torch": "2.13.0"}
    assert read_spec(run.spec) == spec
    assert sorted(p.name for p in run.dir.iterdir()) == ["config.json", "env.json", "preprocessing.json"]


def test_resetting_a_run_discards_its_training_and_keeps_what_it_was_asked(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    store.write_config(RUN_ID, {"model": "lcovnet"})
    run = store.paths(RUN_ID)
    for path in (run.checkpoint_last, run.checkpoint_best, run.weights, run.train_log, run.summary):
        path.write_text("x")
    (run.predictions / "c1.nii.gz").parent.mkdir()
    (run.predictions / "c1.nii.gz").write_text("x")
    store.reset_run(RUN_ID)
    assert [p.name for p in run.dir.iterdir()] == ["config.json"] and not store.is_complete(RUN_ID)
