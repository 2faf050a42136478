import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.atomic import atomic_write_json, atomic_write_text
from bench.errors import BenchError
from bench.run_summary import RunSummary
from bench.store import ResultsStore, make_run_id

# A run recorder shared by the subprocess tests: run ids "<prefix>-<i>", 3 cases x 2 organs each.
RECORDER = textwrap.dedent(
    """
    import sys
    import pandas as pd
    from bench.run_summary import RunSummary
    from bench.store import ResultsStore

    root, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = ResultsStore(root)
    print("ready", flush=True)
    for i in range(count):
        cases = [f"case{c}" for c in range(3) for _ in range(2)]
        per_case = pd.DataFrame({"case": cases, "label": [1, 2] * 3, "name": ["liver", "spleen"] * 3,
                                 "dice": [0.5 + i / 1000] * 6, "hd95": [float(i)] * 6, "status": ["ok"] * 6})
        run_id = f"{prefix}-{i}"
        summary = {"run_id": run_id, "model": "m", "kd": "none", "seed": i, "dice_mean": 0.5 + i / 1000}
        store.record_run(run_id, RunSummary.from_dict(summary), per_case)
    """
)


def _summary(run_id: str, **values) -> RunSummary:
    """A summary with only ``values`` recorded (the others null), as a hand-made store has them."""
    return RunSummary.from_dict({"run_id": run_id, **values})


def _per_case(dice: list[float]) -> pd.DataFrame:
    n = len(dice)
    return pd.DataFrame(
        {
            "case": [f"c{i // 2:03d}" for i in range(n)],
            "label": [1 + i % 2 for i in range(n)],
            "name": ["liver" if i % 2 == 0 else "spleen" for i in range(n)],
            "dice": dice,
            "hd95": [float("nan") if math.isnan(d) else 10 * (1 - d) for d in dice],
            "status": ["both_empty" if math.isnan(d) else ("missed" if d == 0 else "ok") for d in dice],
        }
    )


def test_atomic_write_json_turns_nan_and_numpy_into_plain_json_in_insertion_order(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "summary.json"
    atomic_write_json(
        path,
        {
            "z": np.float32(0.5),
            "a": float("nan"),
            "patch": (64, 128, 128),
            "n": np.int64(3),
            "inf": float("inf"),
            "dir": Path("runs/x"),
            "ok": True,
        },
    )
    text = path.read_text()
    assert list(json.loads(text)) == ["z", "a", "patch", "n", "inf", "dir", "ok"]
    assert json.loads(text) == {
        "z": 0.5,
        "a": None,
        "patch": [64, 128, 128],
        "n": 3,
        "inf": None,
        "dir": "runs/x",
        "ok": True,
    }
    assert text.startswith('{\n  "z": 0.5,')
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]  # no temp file left behind


def test_killed_writer_leaves_either_the_old_or_a_new_file(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    size = 4_000_000

    def version(i: int) -> str:
        return f"begin {i}\n" + "x" * size + f"\nend {i}\n"

    atomic_write_text(target, version(0))
    writer = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from bench.atomic import atomic_write_text
        print("ready", flush=True)
        i = 1
        while True:
            atomic_write_text(Path(sys.argv[1]), f"begin {{i}}\\n" + "x" * {size} + f"\\nend {{i}}\\n")
            i += 1
        """
    )
    for delay in (0.0, 0.013, 0.05, 0.11):
        proc = subprocess.Popen([sys.executable, "-c", writer, str(target)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        text = target.read_text()
        first = text.split("\n", 1)[0]
        assert first.startswith("begin ")
        assert text == version(int(first.split()[1]))


def test_two_processes_record_different_runs_into_one_database(tmp_path: Path) -> None:
    root = tmp_path / "results"  # not created beforehand: both processes also race to create the database
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RECORDER, str(root), prefix, "25"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for prefix in ("a", "b")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with sqlite3.connect(root / "bench.sqlite") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 25 * 2
        assert conn.execute("SELECT COUNT(*) FROM per_case").fetchone()[0] == 25 * 2 * 6
    store = ResultsStore(root)
    assert [s.run_id for s in store.summaries()] == sorted(f"{p}-{i}" for p in "ab" for i in range(25))
    frame = store.per_case()
    assert frame.groupby("run_id").size().eq(6).all()
    assert frame.loc[frame.run_id == "b-7", "hd95"].tolist() == [7.0] * 6


def test_killed_recorder_leaves_a_consistent_store(tmp_path: Path) -> None:
    root = tmp_path / "results"
    proc = subprocess.Popen(
        [sys.executable, "-c", RECORDER, str(root), "r", "100000"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 30
    while len(list((root / "runs").glob("*/summary.json"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    with sqlite3.connect(root / "bench.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store = ResultsStore(root)
    summaries = store.summaries()
    assert len(summaries) >= 5
    frame = store.per_case()
    assert sorted(frame.run_id.unique()) == [s.run_id for s in summaries]
    for summary in summaries:
        rows = frame[frame.run_id == summary.run_id]
        assert len(rows) == 6
        assert rows.dice.tolist() == pytest.approx([summary.dice_mean] * 6)


def test_summaries_list_only_complete_runs_sorted_by_run_id(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    store.record_run("b-run", _summary("b-run", model="unet3d"), _per_case([0.9, 0.8]))
    store.record_run("a-run", _summary("a-run", model="lcovnet"), _per_case([0.7, 0.6]))
    unfinished = store.run_dir("c-run")
    (unfinished / "train_log.csv").write_text("iteration,loss\n1,0.5\n")
    (unfinished / "per_case.csv").write_text("case,label,name,dice,hd95,status\nc0,1,liver,0.5,1.0,ok\n")
    assert [s.run_id for s in store.summaries()] == ["a-run", "b-run"]
    assert store.summaries()[0] == _summary("a-run", model="lcovnet")
    assert store.is_complete("a-run") and not store.is_complete("c-run") and not store.is_complete("nope")
    assert set(store.per_case().run_id) == {"a-run", "b-run"}


def test_per_case_round_trips_values_nan_and_order(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    original = _per_case([0.91, float("nan"), 0.0, 0.75])
    store.record_run("r1", _summary("r1", model="m"), original)
    store.record_run("r2", _summary("r2", model="m"), _per_case([0.5, 0.5]))
    back = store.per_case("r1")
    assert back.columns.tolist() == ["run_id", "case", "label", "name", "dice", "hd95", "status"]
    assert (back.run_id == "r1").all()
    pd.testing.assert_frame_equal(back.drop(columns="run_id").astype({"label": "int64"}), original, check_dtype=False)
    on_disk = pd.read_csv(store.run_dir("r1") / "per_case.csv", dtype={"case": str})
    pd.testing.assert_frame_equal(on_disk, original, check_dtype=False)
    assert len(store.per_case()) == 6


def test_rerecording_a_run_replaces_its_rows(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    store.record_run("r", _summary("r", dice_mean=0.1), _per_case([0.1, 0.1, 0.1, 0.1]))
    store.record_run("r", _summary("r", dice_mean=0.9), _per_case([0.9, 0.9]))
    assert store.per_case("r").dice.tolist() == [0.9, 0.9]
    assert store.summaries() == [_summary("r", dice_mean=0.9)]


def test_index_catches_up_with_runs_written_without_it_and_drops_deleted_runs(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    store.record_run("kept", _summary("kept", model="m"), _per_case([0.5, 0.6]))
    store.record_run("deleted", _summary("deleted", model="m"), _per_case([0.5, 0.6]))
    orphan = store.run_dir("orphan")  # a writer killed after summary.json but before the database commit
    _per_case([0.3, 0.4]).to_csv(orphan / "per_case.csv", index=False)
    atomic_write_json(orphan / "summary.json", {"run_id": "orphan"})
    for path in (tmp_path / "runs" / "deleted").iterdir():
        path.unlink()
    frame = store.per_case()
    assert sorted(frame.run_id.unique()) == ["kept", "orphan"]
    assert frame.loc[frame.run_id == "orphan", "dice"].tolist() == [0.3, 0.4]
    with sqlite3.connect(store.db_path) as conn:
        assert sorted(r for (r,) in conn.execute("SELECT run_id FROM runs")) == ["kept", "orphan"]


def test_record_run_rejects_per_case_without_required_columns(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    with pytest.raises(ValueError, match="status"):
        store.record_run("r", _summary("r"), _per_case([0.5]).drop(columns="status"))
    assert not store.is_complete("r")


def test_make_run_id_is_readable_and_filesystem_safe() -> None:
    assert make_run_id("lcovnet", "ca+ms", "unet3d", 0, "synthetic", "3f2a9c1b77aa") == (
        "synthetic__lcovnet__kd-ca+ms__t-unet3d__s0__3f2a9c1b"
    )
    assert make_run_id("lcovnet", "none", None, 2, "synthetic", "ab") == "synthetic__lcovnet__kd-none__s2__ab"
    odd = make_run_id("my net/v2", "kd", "t:1", 1, "WORD  data\\x", "0123456789")
    assert odd == "WORD_data_x__my_net_v2__kd-kd__t-t_1__s1__01234567"
    assert not set(odd) & set('/\\:*?"<>| ')


def test_results_root_that_cannot_be_created_names_the_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(BenchError, match=str(blocker / "results")):
        ResultsStore(blocker / "results")


def test_train_log_is_none_until_written_then_read_back(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    assert store.train_log("r") is None
    log = "iteration,loss,seg_loss,kd_loss,lr,val_dice,seconds\n1,0.9,0.8,0.1,0.01,,1.5\n2,0.7,0.6,0.1,0.01,0.42,3.0\n"
    (store.run_dir("r") / "train_log.csv").write_text(log)
    frame = store.train_log("r")
    assert frame.loss.tolist() == [0.9, 0.7]
    assert np.isnan(frame.val_dice[0]) and frame.val_dice[1] == 0.42
    assert os.path.basename(store.db_path) == "bench.sqlite" and store.root == tmp_path


OLD_SCHEMA = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    model TEXT, kd TEXT, teacher TEXT, seed INTEGER, dataset TEXT, preset TEXT, preset_hash TEXT,
    device TEXT, params INTEGER, gmacs REAL, latency_ms_median REAL, peak_mem_mb REAL,
    dice_mean REAL, hd95_mean REAL, n_cases INTEGER, created TEXT,
    summary_sha1 TEXT NOT NULL, summary_json TEXT NOT NULL
);
INSERT INTO runs (run_id, model, kd, seed, summary_sha1, summary_json) VALUES ('old', 'unet3d', 'none', 0, 'x', '{}');
"""


def test_an_older_index_gains_the_fold_teacher_and_argument_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    root = tmp_path / "results"
    root.mkdir()
    with sqlite3.connect(root / "bench.sqlite") as conn:
        conn.executescript(OLD_SCHEMA)
    store = ResultsStore(root)
    summary = _summary("new", model="lcovnet", kd="ca:weight=0.5", teacher="unet3d", teacher_run="t0", seed=0, fold=2,
                       kd_kwargs={"weight": 0.5}, model_kwargs={"base_channels": 8}, teacher_kwargs={})  # fmt: skip
    store.record_run("new", summary, _per_case([0.5, 0.6]))
    with sqlite3.connect(root / "bench.sqlite") as conn:
        conn.row_factory = sqlite3.Row
        rows = {r["run_id"]: dict(r) for r in conn.execute("SELECT * FROM runs")}
    assert rows["old"]["model"] == "unet3d" and rows["old"]["fold"] is None
    new = rows["new"]
    assert (new["fold"], new["teacher_run"]) == (2, "t0")
    assert json.loads(new["kd_kwargs"]) == {"weight": 0.5} and json.loads(new["model_kwargs"]) == {"base_channels": 8}
    assert ResultsStore(root).db_path.is_file()  # opening it again finds the columns present
