"""Progress where stderr is not a terminal (a log file, a pipe): plain lines, throttled by time, never a carriage
return; nothing at all when quiet."""

import re

import pytest

from bench import console
from bench.console import Progress, duration


@pytest.fixture(autouse=True)
def normal_level(monkeypatch):
    monkeypatch.setenv(console.ENV, "normal")
    monkeypatch.delenv("RANK", raising=False)


def test_progress_into_a_log_is_a_plain_line_per_interval_with_the_count_values_and_time_left(capsys):
    with Progress(4, "lcovnet (seed 0)", "it", interval=0) as bar:
        for loss in ("0.9", "0.7", "0.5", "0.4"):
            bar.set_postfix(loss=loss, dice="nan")
            bar.update()
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert len(lines) == 5  # one per update at interval 0, and the closing line
    assert re.fullmatch(r"lcovnet \(seed 0\): 1/4 it, loss 0.9, dice nan \(0 s, about 0 s left\)", lines[0])
    assert lines[-1] == "lcovnet (seed 0): 4/4 it, loss 0.4, dice nan (0 s)"


def test_lines_are_throttled_by_time_so_a_short_phase_leaves_its_closing_line_only(capsys):
    with Progress(10_000, "preprocessing", "cases") as bar:
        for _ in range(10_000):
            bar.update()
    assert capsys.readouterr().err == "preprocessing: 10000/10000 cases (0 s)\n"


def test_an_unknown_total_is_counted_without_an_estimate(capsys):
    with Progress(None, "evaluate", "cases", interval=0) as bar:
        assert list(bar.track("abc")) == ["a", "b", "c"]
    assert capsys.readouterr().err.splitlines() == [f"evaluate: {n} cases (0 s)" for n in (1, 2, 3, 3)]


def test_a_resumed_progress_counts_from_where_it_resumed(capsys):
    with Progress(10, "lcovnet (seed 0)", initial=6) as bar:
        bar.update()
    assert capsys.readouterr().err == "lcovnet (seed 0): 7/10 it (0 s)\n"


def test_quiet_shows_neither_progress_nor_notes(capsys, monkeypatch):
    monkeypatch.setenv(console.ENV, "quiet")
    with Progress(3, "steps", interval=0) as bar:
        bar.update()
    console.note("a note")
    assert capsys.readouterr().err == ""


def test_a_disabled_progress_shows_nothing(capsys):
    with Progress(3, "steps", interval=0, enabled=False) as bar:
        bar.update()
    assert capsys.readouterr().err == ""


def test_duration_reads_as_seconds_minutes_or_hours():
    assert [duration(s) for s in (42.4, 185, 3725)] == ["42 s", "3m05s", "1h02m"]
