"""Map a function over cases in worker processes, with a progress bar."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int, desc: str, progress: bool = True) -> list[R]:
    """``[fn(x) for x in items]`` in up to ``workers`` processes (in this process when 1), results in input order.

    Workers are spawned, not forked: the parent may hold torch/OpenMP or ITK thread pools that do not survive a fork.
    Each worker runs ITK single-threaded so that ``workers`` processes use ``workers`` cores.
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
        with ProcessPoolExecutor(min(workers, len(items)), mp_context=ctx, initializer=_single_threaded_itk) as pool:
            futures = [pool.submit(fn, x) for x in items]
            for _ in as_completed(futures):
                bar.update()
            return [f.result() for f in futures]
    finally:
        bar.close()


def _single_threaded_itk() -> None:
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
