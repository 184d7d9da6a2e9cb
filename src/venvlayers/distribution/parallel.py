"""Blobs moved a few at a time: network transfers overlap, disks and CPUs stay busy."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["each"]

_POLL = 0.2

T = TypeVar("T")
R = TypeVar("R")


def each(work: Callable[[T], R], blobs: Sequence[T], parallel: int) -> list[R]:
    """`work` on every blob, `parallel` at a time; results in the order of `blobs`.

    The first failure stops the rest (blobs not yet started are not started) and is
    raised once the transfers under way have ended. An interruption of the caller
    (Ctrl-C) is raised at once: the lanes are daemon threads, so a process that exits
    does not first wait for a 700 MB upload to finish. What they leave behind is what
    a killed process leaves (a `.partial` file, an unfinished upload session), which
    the next run resumes or replaces.
    """
    if parallel <= 1 or len(blobs) <= 1:
        return [work(b) for b in blobs]
    stop = threading.Event()
    lock = threading.Lock()
    todo = iter(enumerate(blobs))
    results: dict[int, R] = {}
    errors: list[BaseException] = []

    def lane() -> None:
        while not stop.is_set():
            with lock:
                item = next(todo, None)
            if item is None:
                return
            index, blob = item
            try:
                result = work(blob)
            except BaseException as exc:  # the first one is the cause; report it
                with lock:
                    errors.append(exc)
                stop.set()
                return
            with lock:
                results[index] = result

    lanes = [
        threading.Thread(target=lane, name=f"venvlayers-blob-{i}", daemon=True)
        for i in range(min(parallel, len(blobs)))
    ]
    for thread in lanes:
        thread.start()
    try:
        for thread in lanes:
            while thread.is_alive():
                # a bounded wait: Python raises KeyboardInterrupt between waits, whichever
                # thread the signal arrived in (an unbounded join may sleep through it)
                thread.join(_POLL)
    except BaseException:
        stop.set()  # nothing new starts; the caller's cleanup stops what runs
        raise
    if errors:
        raise errors[0]
    return [results[i] for i in range(len(blobs))]
