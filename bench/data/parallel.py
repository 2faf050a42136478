"""Map a function over cases in worker processes, with a progress bar."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from typing import TypeVar

from tqdm import tqdm

from bench.interrupt import workers_ignore_sigint

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int, desc: str, progress: bool = True) -> list[R]:
    """``[fn(x) for x in items]`` in up to ``workers`` processes (in this process when 1), results in input order.

    Workers are spawned, not forked: the parent may hold torch/OpenMP or ITK thread pools that do not survive a fork.
    Each worker runs ITK single-threaded so that ``workers`` processes use ``workers`` cores, and ignores SIGINT: on
    Ctrl-C the parent's ``KeyboardInterrupt`` leaves the ``Pool`` block, which terminates the workers at once
    (``ProcessPoolExecutor`` would wait for the cases under way); see ``bench.interrupt``.
    """
    bar = tqdm(total=len(items), desc=desc, unit="case", disable=not progress or not items)
    try:
        if workers <= 1 or len(items) <= 1:
            out = []
            for x in items:
                out.append(fn(x))
                bar.update()
            return out
        ctx = multiprocessing.get_context("spawn")
        with workers_ignore_sigint():
            pool = ctx.Pool(min(workers, len(items)), initializer=_single_threaded_itk)
        with pool:
            out = []
            for result in pool.imap(fn, items):
                out.append(result)
                bar.update()
            return out
    finally:
        bar.close()


def _single_threaded_itk() -> None:
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
