"""Map a function over cases in worker processes, with a progress bar."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from typing import TypeVar

from bench.console import Progress
from bench.interrupt import worker_pool

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int, desc: str, progress: bool = True) -> list[R]:
    """``[fn(x) for x in items]`` in up to ``workers`` processes (in this process when 1), results in input order.

    Workers are spawned, not forked: the parent may hold torch/OpenMP or ITK thread pools that do not survive a fork.
    Each worker runs ITK single-threaded so that ``workers`` processes use ``workers`` cores, and ignores SIGINT: on
    Ctrl-C the parent's ``KeyboardInterrupt`` leaves the pool's block, which terminates the workers at once; see
    ``bench.interrupt``.
    """
    with Progress(len(items), desc, "cases", enabled=progress) as bar:
        if workers <= 1 or len(items) <= 1:
            return [fn(x) for x in bar.track(items)]
        ctx = multiprocessing.get_context("spawn")
        with worker_pool(min(workers, len(items)), desc, ctx, _single_threaded_itk) as pool:
            return list(bar.track(pool.imap(fn, items)))


def _single_threaded_itk() -> None:
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
