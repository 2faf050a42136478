"""Grid progress: numbered lines, the estimate of the time left and the closing table."""

from bench.grid.progress import GridProgress, PlannedRun
from bench.run_summary import RunSummary

PLAN = [
    PlannedRun("t", "unet3d", "none", 0, None, is_teacher=True),
    PlannedRun("a", "lcovnet", "none", 0, None),
    PlannedRun("b", "lcovnet", "ca", 0, "unet3d"),
    PlannedRun("c", "lcovnet", "ms", 0, "unet3d"),
    PlannedRun("d", "unet3d", "ca", 0, "unet3d"),
]


def _finish(progress: GridProgress, run_id: str, seconds: float, dice: float) -> None:
    progress.start(run_id)
    progress._started[run_id] -= seconds  # as if the run had taken `seconds`
    progress.finished(run_id, RunSummary.from_dict({"run_id": run_id, "dice_mean": dice, "hd95_mean": 10.0}))


def test_estimate_uses_finished_runs_of_the_same_model_and_kind_and_skips_complete_ones(capsys):
    progress = GridProgress(PLAN, complete={"c"})
    _finish(progress, "t", 100, 0.8)
    _finish(progress, "a", 20, 0.6)
    _finish(progress, "b", 30, 0.65)
    lines = capsys.readouterr().err.splitlines()
    # left: c (complete, 0 s) and d (unet3d with KD: no finished run of that kind, so the mean of all three)
    assert (
        lines[-1] == "done in 30 s: Dice 0.6500, HD95 10.00 mm; 3/5 runs done, about 50 s left for 1 more "
        "(estimated from 3 trained runs)"
    )
    assert lines[0] == "[1/5] unet3d (teacher), seed 0" and lines[4] == "[3/5] lcovnet + ca from unet3d, seed 0"
    progress.skipped("c", RunSummary.from_dict({"run_id": "c", "dice_mean": 0.61, "hd95_mean": 11.0}))
    assert capsys.readouterr().err.startswith("[4/5] lcovnet + ms from unet3d, seed 0: complete, skipped")
    table = progress.table().splitlines()
    assert table[0].split() == ["run", "status", "Dice", "HD95", "(mm)", "time"]
    assert table[2].split() == ["unet3d", "(teacher),", "seed", "0", "trained", "0.8000", "10.00", "1m40s"]
    assert table[-1].split()[-4:] == ["run", "-", "-", "-"]  # unet3d + ca: not run
