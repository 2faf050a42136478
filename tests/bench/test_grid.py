"""Issue 15: the grid as a plan of cells (dependencies, run ids), the cells' states for `bench status`, the SLURM
option parsing and `bench run --dry-run`. The executors themselves: test_grid_executors.py."""

import os
import signal
import subprocess
import sys

import pytest

from bench.atomic import atomic_write_json
from bench.errors import BenchError
from bench.executors.jobs import cell_state, write_job
from bench.executors.slurm import parse_opts, parse_time
from bench.grid.plan import Cell, cell_run_id, plan_cells
from bench.grid.spec import GridSpec
from bench.store import make_run_id
from bench.store_layout import ResultsLayout
from bench.training.config import load_config
from tests.bench.runutil import TINY_RUN, bench_cmd


def _spec(models, kds, overrides=(), **kw):
    return GridSpec(models=models, kds=kds, config=load_config("smoke", list(overrides)), preset="smoke", **kw)


def test_plan_lists_the_teacher_first_and_kd_cells_need_their_teacher():
    cells = plan_cells(_spec(["lcovnet"], ["ca", "ms"]), "D", ["unet3d"])
    assert [(c.model, c.kd, c.is_teacher) for c in cells] == [
        ("unet3d", "none", True),
        ("lcovnet", "none", False),
        ("lcovnet", "ca", False),
        ("lcovnet", "ms", False),
    ]
    teacher = cells[0].run_id
    assert [c.needs for c in cells] == [(), (), (teacher,), (teacher,)]
    assert cells[2].run_id == make_run_id("lcovnet", "ca", "unet3d", 0, "D", load_config("smoke").hash())


def test_plan_with_kd_init_student_makes_kd_cells_wait_for_the_no_kd_cell_too():
    cells = plan_cells(_spec(["lcovnet"], ["ca"], ['kd_init="student"']), "D", ["unet3d"])
    teacher, none, kd = cells
    assert kd.needs == (teacher.run_id, none.run_id) and kd.init_run == none.run_id


def test_plan_lists_a_teacher_that_is_also_a_student_once_and_a_checkpoint_teacher_not_at_all(tmp_path):
    cells = plan_cells(_spec(["unet3d", "lcovnet"], ["ca"], seeds=[0, 1]), "D", ["unet3d"])
    assert len(cells) == 2 * 4 and len({c.run_id for c in cells}) == len(cells)
    assert [c.seed for c in cells] == [0] * 4 + [1] * 4
    from_file = plan_cells(_spec(["lcovnet"], ["ca"], teacher_checkpoint=tmp_path / "t.pt"), "D", ["unet3d"])
    assert [(c.model, c.kd, c.needs) for c in from_file] == [("lcovnet", "none", ()), ("lcovnet", "ca", ())]


def test_several_teachers_are_an_axis_each_kd_cell_waiting_for_its_own_teacher():
    cells = plan_cells(_spec(["lcovnet"], ["ca"]), "D", ["unet3d", "nnunet:base_channels=8"])
    teachers = {c.model: c.run_id for c in cells if c.is_teacher}
    kd = {c.teacher_label: c for c in cells if c.kd == "ca"}
    assert list(teachers) == ["unet3d", "nnunet"] and len(cells) == 2 + 1 + 2
    assert kd["unet3d"].needs == (teachers["unet3d"],)
    assert kd["nnunet:base_channels=8"].needs == (teachers["nnunet"],)
    assert kd["unet3d"].run_id != kd["nnunet:base_channels=8"].run_id


def test_a_teacher_with_its_own_protocol_is_its_own_run_and_its_kd_cells_get_new_ids():
    shared = plan_cells(_spec(["unet3d", "lcovnet"], ["ca"]), "D", ["unet3d"])
    own_config = load_config("smoke", ["iterations=1600"])
    own = plan_cells(_spec(["unet3d", "lcovnet"], ["ca"], teacher_config=own_config), "D", ["unet3d"])
    assert len(shared) == 4 and len(own) == 5  # the teacher no longer doubles as the unet3d student
    teacher = own[0]
    assert teacher.is_teacher and teacher.own_protocol
    assert teacher.run_id == make_run_id("unet3d", "none", None, 0, "D", own_config.hash())
    students = {c.run_id for c in shared if not c.is_teacher and c.kd == "none"}
    assert students <= {c.run_id for c in own}  # no-KD students keep their ids
    kd_shared = {c.run_id for c in shared if c.kd == "ca"}
    kd_own = [c for c in own if c.kd == "ca"]
    assert not kd_shared & {c.run_id for c in kd_own} and all(c.needs == (teacher.run_id,) for c in kd_own)


def test_a_teachers_own_protocol_may_not_change_the_data():
    from bench.training.config import check_teacher_config, split_teacher_overrides

    shared, own = split_teacher_overrides(["iterations=10", " teacher.iterations=1600", "teacher.spacing=[1,1,1]"])
    assert shared == ["iterations=10"] and own == ["iterations=1600", "spacing=[1,1,1]"]
    check_teacher_config(load_config("smoke"), load_config("smoke", ["iterations=1600", "lr=0.001"]), "t")
    with pytest.raises(BenchError, match=r"t: the teacher's spacing \(\[1, 1, 1\]\) must equal the students'"):
        check_teacher_config(load_config("smoke"), load_config("smoke", own), "t")


def test_run_ids_carry_model_and_kd_arguments_only_when_there_are_some():
    plain = cell_run_id("lcovnet", "ca", "unet3d", 0, "D", "abcdef123")
    assert plain == make_run_id("lcovnet", "ca", "unet3d", 0, "D", "abcdef123")
    with_kd = cell_run_id("lcovnet", "ca", "unet3d", 0, "D", "abcdef123", kd_kwargs={"weight": 2})
    with_model = cell_run_id("lcovnet", "ca", "unet3d", 0, "D", "abcdef123", model_kwargs={"weight": 2})
    assert with_kd.startswith(plain + "__a-") and len({plain, with_kd, with_model}) == 3


@pytest.mark.parametrize("text, minutes", [("90", 90), ("1:30:00", 90), ("2:30", 3), ("1-00", 1440)])
def test_slurm_time_accepts_sbatch_formats(text, minutes):
    assert parse_time(text) == minutes


def test_slurm_options_are_key_value_and_bad_time_is_named():
    assert parse_opts(["account=abc", "--exclusive"]) == {"account": "abc", "exclusive": ""}
    with pytest.raises(BenchError, match="--slurm-time"):
        parse_time("soon")


HOLD = "import sys, time; from bench.runlock import RunLock; RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)"  # noqa: E501


def test_cell_states_from_run_directories_job_records_and_locks(tmp_path):
    runs = tmp_path / "runs"
    for name in ("done", "run", "fail", "cut", "new"):
        (runs / name).mkdir(parents=True)
    atomic_write_json(runs / "done" / "summary.json", {"train_seconds": 75})
    (runs / "cut" / "checkpoint_last.pt").write_bytes(b"x")
    write_job(tmp_path, Cell("fail", "lcovnet", "ca", 0, "unet3d"), 3, "slurm", "41")
    job = ResultsLayout(tmp_path).job("fail")
    job.error.write_text("Traceback\nValueError: planted\n")
    (job.dir / "41_0_log.err").write_text("step 1\rstep 2\n\n")
    write_job(tmp_path, Cell("new", "lcovnet", "none", 1), 4, "slurm", "42")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(runs / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        queue = {"42": ("PENDING", "0:00")}
        states = {n: cell_state(tmp_path, n, queue) for n in ("done", "run", "fail", "cut", "new")}
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert {n: s.state for n, s in states.items()} == {"done": "complete", "run": "running", "fail": "failed",
                                                       "cut": "interrupted", "new": "queued"}  # fmt: skip
    assert states["done"].elapsed == "1m15s"
    assert states["fail"].error.endswith("ValueError: planted") and states["fail"].last_line == "step 2"
    assert states["fail"].job_id == "41" and states["new"].job_id == "42"
    assert states["fail"].cell == "lcovnet + ca from unet3d, seed 0" and states["done"].cell == "-"


def _grid_args(data, results, *extra):
    return bench_cmd("run", "--models", "lcovnet", "--kd", "ca", "--data", str(data), "--results", str(results),
                     *TINY_RUN, "--set", "iterations=2", "--set", "val_every=2", *extra)  # fmt: skip


def test_dry_run_prints_cells_dependencies_and_states_and_trains_nothing(tiny_dataset, tmp_path):
    proc = subprocess.run(_grid_args(tiny_dataset, tmp_path / "res", "--dry-run"), capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert "needs" in lines[0] and "state" in lines[0]
    assert "unet3d (teacher), seed 0" in lines[2] and lines[2].rstrip().endswith("not started")
    assert "lcovnet + ca from unet3d, seed 0" in lines[4] and " #1 " in lines[4]
    assert not list((tmp_path / "res" / "runs").iterdir())


def test_wait_without_slurm_and_bad_jobs_are_one_line_errors(tiny_dataset, tmp_path):
    for extra, message in [(["--wait"], "--wait goes with --executor slurm"), (["--jobs", "0"], "--jobs")]:
        proc = subprocess.run(_grid_args(tiny_dataset, tmp_path / "res", *extra), capture_output=True, text=True)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_folds_are_an_axis_each_with_its_teacher_and_fold_0_keeps_the_ids_of_earlier_versions():
    cells = plan_cells(_spec(["lcovnet"], ["ca"], folds=[0, 2]), "D", ["unet3d"])
    assert [(c.fold, c.model, c.kd) for c in cells] == [
        (0, "unet3d", "none"), (0, "lcovnet", "none"), (0, "lcovnet", "ca"),
        (2, "unet3d", "none"), (2, "lcovnet", "none"), (2, "lcovnet", "ca"),
    ]  # fmt: skip
    fold0, fold2 = cells[:3], cells[3:]
    assert fold0[2].run_id == make_run_id("lcovnet", "ca", "unet3d", 0, "D", load_config("smoke").hash())
    assert all(b.run_id == a.run_id + "__f2" for a, b in zip(fold0, fold2))
    assert fold2[2].needs == (fold2[0].run_id,) and fold2[2].label == "lcovnet + ca from unet3d, seed 0, fold 2"


def test_the_kd_gap_presets_teachers_are_twice_as_wide_and_a_shared_override_still_reaches_them(tmp_path):
    students, teachers = load_config("kd_gap"), load_config("kd_gap", teacher=True)
    assert (students.base_channels, teachers.base_channels) == (4, 8)
    assert teachers.teacher_protocol == {} and students.teacher_protocol == {"base_channels": 8}
    assert {k for k, v in teachers.to_dict().items() if v != students.to_dict()[k]} == {
        "base_channels",
        "teacher_protocol",
    }
    # --set applies after the preset's teacher table: a test's tiny width and budget shrink the teachers too
    tiny = load_config("kd_gap", ["base_channels=2", "iterations=2"], teacher=True)
    assert (tiny.base_channels, tiny.iterations) == (2, 2)
    assert load_config("kd_gap", ["iterations=2", "base_channels=16"], teacher=True).base_channels == 16
    assert load_config("smoke", teacher=True).base_channels == load_config("smoke").base_channels == 8
    preset = tmp_path / "p.toml"
    preset.write_text("[teacher_protocol]\nspacing = [1.0, 1.0, 1.0]\n")
    with pytest.raises(BenchError, match=r"teacher_protocol in .*p.toml sets spacing: a teacher's own protocol"):
        load_config(str(preset), teacher=True)
    with pytest.raises(BenchError, match="preset key teacher_protocol must be a table of preset keys"):
        load_config(str(preset))
    preset.write_text("[teacher_protocol]\nbase_chanels = 8\n")
    with pytest.raises(BenchError, match=r"unknown preset key 'base_chanels' in .*p.toml \[teacher_protocol\]"):
        load_config(str(preset), teacher=True)
