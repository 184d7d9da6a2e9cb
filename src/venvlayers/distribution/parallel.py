"""Blobs moved a few at a time: network transfers overlap, disks and CPUs stay busy."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["each"]

T = TypeVar("T")
R = TypeVar("R")


def each(work: Callable[[T], R], blobs: Sequence[T], parallel: int) -> list[R]:
    """`work` on every blob, `parallel` at a time; the first failure stops the rest."""
    if parallel <= 1 or len(blobs) <= 1:
        return [work(b) for b in blobs]
    failed = threading.Event()

    def guarded(blob: T) -> R | None:
        if failed.is_set():
            return None
        try:
            return work(blob)
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="venvlayers-blob") as pool:
        futures = [pool.submit(guarded, b) for b in blobs]
        results = []
        error: BaseException | None = None
        for future in futures:
            try:
                result = future.result()
            except BaseException as exc:  # the first one is the cause; report it
                error = error or exc
                continue
            if result is not None:
                results.append(result)
    if error is not None:
        raise error
    return results
