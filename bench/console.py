"""Everything a command tells its user on stderr, at one of three levels: quiet, normal and verbose.

A command's result (a table, the files it wrote) is printed on stdout and is not this module's business; the rest
goes through here:

- :func:`error` and :func:`warning` at every level;
- :func:`note` (a run starts or ends, a data set is generated) at normal and verbose;
- :func:`detail` at verbose only;
- :class:`Progress` at normal and verbose: a tqdm bar where stderr is a terminal, and elsewhere (a file, a pipe: CI,
  SLURM logs, ``> log``) one plain line at most every ``LINE_INTERVAL_S`` seconds and one when the work ends.
  A bar written to a file is a carriage-return frame per update (a smoke grid's log was 260 KB, unreadable with
  ``less``). The lines are throttled by time rather than by steps or percent so that a log grows with the wall time
  alone, at most 120 progress lines an hour, whether a phase has 20 cases or 100,000 iterations: a phase shorter
  than the interval leaves its one closing line, and during a long one ``tail -f`` or ``bench status``'s last log
  line is about 30 s old at most (as long as steps keep ending).

Records of ``logging`` reach stderr through here too: the project's layers that cannot import this package
(``models``, ``kd_methods``) log, and other libraries' warnings are shown.

The level is set by the CLI (``-q``/``-v``) and kept in the environment variable ``SEGKD_VERBOSITY``
(``quiet``, ``normal`` or ``verbose``; without a flag the variable's value holds), which every process a command starts
inherits: the local executor's workers, SLURM jobs, the profiling subprocess and the preprocessing pool follow the
command's level. In a ``torchrun`` job the ranks other than 0 are quiet, so that one process reports for the job.
"""

from __future__ import annotations

import enum
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

from bench.interrupt import interrupt_point, sigint_held

if TYPE_CHECKING:
    from tqdm import tqdm

ENV = "SEGKD_VERBOSITY"
LINE_INTERVAL_S = 30.0
# The loggers of the layers that cannot import bench; other libraries' records reach stderr only from WARNING up.
LOGGERS = ("models", "kd_methods")

T = TypeVar("T")


class Verbosity(enum.IntEnum):
    """What reaches stderr: warnings and errors (quiet), also notes and progress (normal), also details (verbose)."""

    QUIET = 0
    NORMAL = 1
    VERBOSE = 2


def configure(level: Verbosity | None = None) -> None:
    """Make this process, and every process it starts, report at ``level`` (None: the level ``SEGKD_VERBOSITY``
    names, else normal), and route ``logging`` records through this module."""
    level = verbosity() if level is None else level
    os.environ[ENV] = level.name.lower()
    handler = _Handler()
    logging.getLogger().handlers[:] = [handler]
    threshold = {Verbosity.QUIET: logging.WARNING, Verbosity.NORMAL: logging.INFO, Verbosity.VERBOSE: logging.DEBUG}
    for name in LOGGERS:
        logging.getLogger(name).setLevel(threshold[level])


def verbosity() -> Verbosity:
    """This process's level: ``SEGKD_VERBOSITY`` (normal when unset or unknown); quiet on a torchrun rank but 0."""
    if os.environ.get("RANK", "0") != "0":
        return Verbosity.QUIET
    try:
        return Verbosity[os.environ.get(ENV, "normal").upper()]
    except KeyError:
        return Verbosity.NORMAL


def error(text: str) -> None:
    """A line at every level (the CLI's one-line errors)."""
    _write(text)


def warning(text: str) -> None:
    """``warning: text`` at every level."""
    _write(f"warning: {text}")


def note(text: str) -> None:
    """A line at normal and verbose level: what the command is doing."""
    if verbosity() >= Verbosity.NORMAL:
        _write(text)


def detail(text: str) -> None:
    """``debug: text`` at verbose level only."""
    if verbosity() >= Verbosity.VERBOSE:
        _write(f"debug: {text}")


def _write(text: str) -> None:
    """One line to stderr, above a progress bar that is showing (tqdm clears and redraws it)."""
    from tqdm import tqdm

    with sigint_held():  # a line cut by Ctrl-C would run into the next one
        tqdm.write(text, file=sys.stderr)
        sys.stderr.flush()


class _Handler(logging.Handler):
    """``bench: note`` for information, ``warning: ...`` / ``debug: ...`` for the other levels."""

    def emit(self, record: logging.LogRecord) -> None:
        prefix = "bench" if record.levelno == logging.INFO else record.levelname.lower()
        _write(f"{prefix}: {record.getMessage()}")


def duration(seconds: float) -> str:
    """``42 s``, ``3m05s``, ``1h02m``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """``total`` steps of work (None: unknown) named ``desc``, shown as the level and stderr allow; a context manager.

    Building, updating and closing a bar run to their end even when Ctrl-C comes, which is then raised after them
    (:func:`bench.interrupt.sigint_held`): a tqdm object half-built by an interrupt prints "Exception ignored in
    tqdm.__del__" with a traceback when it is collected. Each of those moments is an :func:`interrupt_point`
    (``DESC: before bar``, ``DESC: inside bar``, ``DESC: after bar``, ``DESC: step N``, ``DESC: closing bar``).
    ``enabled=False`` shows nothing (a caller's ``progress`` argument); ``leave=False`` removes a terminal's bar when
    it closes. ``interval`` is the seconds between lines where stderr is not a terminal.
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        *,
        initial: int = 0,
        enabled: bool = True,
        leave: bool = True,
        interval: float = LINE_INTERVAL_S,
    ) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self._initial, self._interval, self._leave = initial, interval, leave
        self._postfix: dict[str, str] = {}
        self._bar: tqdm | None = None
        self._lines = False  # plain lines instead of a bar, until closed
        self._start = self._last = time.monotonic()
        self._shown = enabled and total != 0 and verbosity() >= Verbosity.NORMAL

    def __enter__(self) -> Progress:
        if self._shown:
            try:
                interrupt_point(f"{self.desc}: before bar")
                with sigint_held():
                    interrupt_point(f"{self.desc}: inside bar")
                    self._open()
                interrupt_point(f"{self.desc}: after bar")
            except BaseException:  # a Ctrl-C held while the bar was built: no __exit__ follows an __enter__ that raised
                self.close()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        self._start = self._last = time.monotonic()
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, initial=self.n, desc=self.desc, unit=self.unit, file=sys.stderr,
                             dynamic_ncols=True, leave=self._leave)  # fmt: skip
        else:
            self._lines = True

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            with sigint_held():
                self._bar.update(n)
        elif self._lines and time.monotonic() - self._last >= self._interval:
            self._last = time.monotonic()
            _write(self._line(final=False))
        if self._shown:
            interrupt_point(f"{self.desc}: step {self.n}")

    def set_postfix(self, **values: str) -> None:
        """Values shown after the count, in this order (``loss="0.412", dice="0.781"``)."""
        self._postfix = values
        if self._bar is not None:
            with sigint_held():
                self._bar.set_postfix(values)

    def track(self, items: Iterable[T]) -> Iterator[T]:
        """``items``, one step counted as each is done (when the next one is asked for)."""
        for item in items:
            yield item
            self.update()

    def close(self) -> None:
        """Close the bar (a terminal keeps it unless ``leave=False``) or write the closing line; only the first call
        does anything."""
        if not (self._bar is not None or self._lines):
            return
        with sigint_held():
            interrupt_point(f"{self.desc}: closing bar")
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            else:
                self._lines = False
                _write(self._line(final=True))

    def _line(self, final: bool) -> str:
        """``lcovnet (seed 0): 300/1000 it, loss 0.412, dice 0.781 (1m02s, about 2m25s left)``."""
        elapsed = time.monotonic() - self._start
        count = f"{self.n}" if self.total is None else f"{self.n}/{self.total}"
        values = "".join(f", {key} {value}" for key, value in self._postfix.items())
        when = duration(elapsed)
        done = self.n - self._initial
        if not final and self.total is not None and done > 0:
            when += f", about {duration(elapsed / done * (self.total - self.n))} left"
        return f"{self.desc}: {count} {self.unit}{values} ({when})"
