"""Diagnostics go through logging to stderr; --quiet keeps warnings only, --verbose adds debug messages."""

import logging
import subprocess
import sys

import pytest

from bench.cli import LOGGERS, configure_logging


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, levels = list(root.handlers), {n: logging.getLogger(n).level for n in LOGGERS}
    yield
    root.handlers[:] = handlers
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize(
    ("level", "shown", "hidden"),
    [
        (logging.INFO, ["bench: a note", "warning: a warning"], ["debug: a detail"]),
        (logging.WARNING, ["warning: a warning"], ["a note", "a detail"]),
        (logging.DEBUG, ["debug: a detail", "bench: a note", "warning: a warning"], []),
    ],
)
def test_log_level_decides_which_diagnostics_reach_stderr(capsys, restore_logging, level, shown, hidden):
    configure_logging(level)
    log = logging.getLogger("bench.store")
    log.debug("a detail")
    log.info("a note")
    log.warning("a warning")
    logging.getLogger("some.other.library").info("not ours")
    captured = capsys.readouterr()
    assert captured.out == ""
    for text in shown:
        assert text in captured.err
    for text in [*hidden, "not ours"]:
        assert text not in captured.err


def test_quiet_and_verbose_are_global_options_that_exclude_each_other():
    ok = subprocess.run([sys.executable, "-m", "bench", "--quiet", "list", "--pattern", "lcov*"],
                        capture_output=True, text=True, timeout=300)  # fmt: skip
    assert ok.returncode == 0 and "lcovnet" in ok.stdout
    both = subprocess.run(
        [sys.executable, "-m", "bench", "-q", "-v", "list"], capture_output=True, text=True, timeout=300
    )
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
