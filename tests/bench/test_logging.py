"""Messages reach stderr through bench.console at the command's level: -q keeps warnings only, -v adds details,
and the processes a command starts follow its level."""

import logging
import multiprocessing
import subprocess
import sys

import pytest

from bench import console
from bench.console import LOGGERS, Verbosity
from bench.interrupt import worker_pool


@pytest.fixture
def restore_output(monkeypatch):
    monkeypatch.setenv(console.ENV, "normal")  # undone after the test, whatever console.configure sets
    monkeypatch.delenv("RANK", raising=False)
    root = logging.getLogger()
    handlers, levels = list(root.handlers), {n: logging.getLogger(n).level for n in LOGGERS}
    yield
    root.handlers[:] = handlers
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def _say_everything() -> None:
    console.detail("a detail")
    console.note("a note")
    console.warning("a warning")
    plugin = logging.getLogger("models._plugins")  # the layers that cannot import bench log
    plugin.debug("a plugin detail")
    plugin.info("a plugin note")
    plugin.warning("a plugin warning")
    logging.getLogger("some.other.library").info("not ours")


@pytest.mark.parametrize(
    ("level", "shown", "hidden"),
    [
        (Verbosity.NORMAL, ["a note", "warning: a warning", "bench: a plugin note", "warning: a plugin warning"],
         ["a detail", "a plugin detail"]),
        (Verbosity.QUIET, ["warning: a warning", "warning: a plugin warning"],
         ["a note", "a detail", "a plugin note", "a plugin detail"]),
        (Verbosity.VERBOSE, ["debug: a detail", "a note", "warning: a warning", "debug: a plugin detail",
                             "bench: a plugin note", "warning: a plugin warning"], []),
    ],
)  # fmt: skip
def test_level_decides_which_messages_reach_stderr(capsys, restore_output, level, shown, hidden):
    console.configure(level)
    _say_everything()
    captured = capsys.readouterr()
    assert captured.out == ""
    for text in shown:
        assert text in captured.err
    for text in [*hidden, "not ours"]:
        assert text not in captured.err


def test_without_a_flag_the_level_comes_from_the_environment(capsys, restore_output, monkeypatch):
    monkeypatch.setenv(console.ENV, "quiet")
    console.configure()
    _say_everything()
    assert capsys.readouterr().err.splitlines() == ["warning: a warning", "warning: a plugin warning"]


def test_only_rank_0_of_a_torchrun_job_reports_progress_and_notes(capsys, restore_output, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    console.note("a note")
    with console.Progress(3, "steps", interval=0) as bar:
        bar.update()
    console.warning("a warning")
    assert capsys.readouterr().err == "warning: a warning\n"


def test_processes_started_by_a_command_follow_its_level(capfd, restore_output):
    console.configure(Verbosity.QUIET)
    with worker_pool(1, "test", multiprocessing.get_context("spawn")) as pool:
        pool.apply(console.note, ("a note from a worker",))
        pool.apply(console.warning, ("from a worker",))
    err = capfd.readouterr().err
    assert "warning: from a worker" in err and "a note from a worker" not in err


def test_quiet_and_verbose_are_global_options_that_exclude_each_other():
    ok = subprocess.run([sys.executable, "-m", "bench", "--quiet", "list", "--pattern", "lcov*"],
                        capture_output=True, text=True, timeout=300)  # fmt: skip
    assert ok.returncode == 0 and "lcovnet" in ok.stdout
    both = subprocess.run(
        [sys.executable, "-m", "bench", "-q", "-v", "list"], capture_output=True, text=True, timeout=300
    )
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
