"""Ctrl-C handling: worker processes leave SIGINT to their parent, and training finishes the step under way.

A Ctrl-C in a terminal sends SIGINT to every process of the foreground group, worker processes included; each would
print its own ``KeyboardInterrupt`` traceback. Worker pools are therefore started inside :func:`workers_ignore_sigint`,
which blocks SIGINT in this thread while the workers start: they inherit the blocked signal mask through fork and
exec and never see SIGINT, while a Ctrl-C that comes meanwhile stays pending here and is raised when the block ends.
The parent, which gets ``KeyboardInterrupt``, terminates the workers (SIGTERM) by leaving its ``Pool`` block.

Training defers the interrupt to the end of the optimiser step under way (:class:`DeferredInterrupt`): raised in the
middle of ``optimizer.step()``, it could leave half of the parameters updated, and the checkpoint written on the
way out must hold a state an uninterrupted run passed through.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


@contextlib.contextmanager
def workers_ignore_sigint() -> Iterator[None]:
    """Processes started inside the block never receive SIGINT; a Ctrl-C meanwhile is raised here after the block.

    Blocking covers this thread only; a SIGINT that the kernel hands to another thread (tqdm's monitor, OpenMP) would
    still make Python raise in this one, in the middle of starting a worker, so the handler only records it then.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: came.append(signum))
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        signal.signal(signal.SIGINT, previous)
    if came:
        raise KeyboardInterrupt


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
