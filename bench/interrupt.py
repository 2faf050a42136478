"""Ctrl-C handling: worker processes leave SIGINT to their parent, training finishes the step under way, and the
few statements that must not stop half-way finish before the interrupt is raised.

A Ctrl-C in a terminal sends SIGINT to every process of the foreground group, worker processes included; each would
print its own ``KeyboardInterrupt`` traceback. Worker pools are therefore started inside :func:`workers_ignore_sigint`,
which blocks SIGINT in this thread while the workers start: they inherit the blocked signal mask through fork and
exec and never see SIGINT, while a Ctrl-C that comes meanwhile stays pending here and is raised when the block ends.
The parent, which gets ``KeyboardInterrupt``, terminates the workers (SIGTERM) when it leaves :func:`worker_pool`.

Training defers the interrupt to the end of the optimiser step under way (:class:`DeferredInterrupt`): raised in the
middle of ``optimizer.step()``, it could leave half of the parameters updated, and the checkpoint written on the
way out must hold a state an uninterrupted run passed through. :func:`sigint_held` does the same for a progress
bar being built or closed and for a pool being shut down.

For tests, :func:`interrupt_point` marks the moments where an interrupt matters: a process whose environment
variable ``SEGKD_SIGINT_AT`` names one sends itself and its process group SIGINT there, as Ctrl-C would, so that a
test interrupts at an exact point instead of after a sleep.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext
    from multiprocessing.pool import Pool

SIGINT_AT_ENV = "SEGKD_SIGINT_AT"


def interrupt_point(name: str) -> None:
    """Send SIGINT to this process group, as Ctrl-C in a terminal does, when ``SEGKD_SIGINT_AT`` is ``name`` (a test
    hook). It fires once: the variable is removed, so processes started afterwards do not inherit it."""
    if os.environ.get(SIGINT_AT_ENV) == name:
        del os.environ[SIGINT_AT_ENV]
        os.killpg(os.getpgrp(), signal.SIGINT)


@contextlib.contextmanager
def sigint_held() -> Iterator[None]:
    """Run the block to its end even when Ctrl-C comes; a Ctrl-C meanwhile is handed after it to the handler in
    place before it (``KeyboardInterrupt``, or a :class:`DeferredInterrupt`'s). Outside the main thread, where
    Python raises no ``KeyboardInterrupt``, it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: came.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)  # runs the recorder first if a SIGINT is still pending
    if came:
        signal.raise_signal(signal.SIGINT)


@contextlib.contextmanager
def workers_ignore_sigint() -> Iterator[None]:
    """Processes started inside the block never receive SIGINT; a Ctrl-C meanwhile is raised here after the block
    (handed to the handler in place before it).

    Blocking covers this thread only; a SIGINT that the kernel hands to another thread (tqdm's monitor, OpenMP) would
    still make Python raise in this one, in the middle of starting a worker, so it is held (:func:`sigint_held`).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from multiprocessing import resource_tracker

    # multiprocessing starts its resource tracker with the first pool and then *unblocks* SIGINT in this thread
    # (bpo-33613), which would let every worker started after it inherit an open mask: start it before blocking.
    resource_tracker.ensure_running()
    with sigint_held():
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def worker_pool(
    processes: int, name: str, context: BaseContext | None = None, initializer: Callable[[], None] | None = None
) -> Iterator[Pool]:
    """A ``multiprocessing`` pool whose workers ignore SIGINT, terminated and joined when the block ends, however it
    ends: a Ctrl-C stops the parent at once (``ProcessPoolExecutor`` would wait for the jobs under way) and leaves no
    worker behind, since the shutdown itself is held (:func:`sigint_held`). Interrupt points: ``NAME: pool start``,
    ``NAME: pool shutdown``.
    """
    pool = None
    try:
        with workers_ignore_sigint():  # a Ctrl-C while the workers start is raised at its end, with `pool` set
            interrupt_point(f"{name}: pool start")
            pool = (context or multiprocessing.get_context()).Pool(processes, initializer=initializer)
        yield pool
    finally:
        if pool is not None:
            with sigint_held():
                interrupt_point(f"{name}: pool shutdown")
                pool.terminate()
                pool.join()


class DeferredInterrupt:
    """While active, SIGINT raises ``KeyboardInterrupt`` at once, except inside :meth:`deferred` blocks, where it is
    recorded and raised when the block ends. Outside the main thread (where handlers cannot be set) it does nothing."""

    def __init__(self) -> None:
        self.requested = False
        self._deferring = False
        self._previous: object = None
        self._installed = False

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._deferring:
            self.requested = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Run the block to its end even when Ctrl-C comes; raise ``KeyboardInterrupt`` after it if one came."""
        outer = self._deferring
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = outer
        if self.requested and not outer:
            raise KeyboardInterrupt
