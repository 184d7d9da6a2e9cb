"""`each`: blobs moved a few at a time, failures and interruptions."""

from __future__ import annotations

import _thread
import threading

import pytest

from venvlayers.distribution.parallel import each


def test_results_come_in_the_order_of_the_blobs() -> None:
    gate = threading.Barrier(3)

    def work(n: int) -> int:
        if n < 3:
            gate.wait(10)  # the first three run at the same time
        return n * n

    assert each(work, list(range(8)), 3) == [n * n for n in range(8)]
    assert each(work, [], 3) == []


def test_the_first_failure_stops_the_rest_and_is_raised() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def work(n: int) -> int:
        with lock:
            started.append(n)
        if n == 1:
            raise ValueError("blob 1 is broken")
        return n

    with pytest.raises(ValueError, match="blob 1 is broken"):
        each(work, list(range(50)), 2)
    assert len(started) < 50  # what had not started, did not


def test_an_interruption_does_not_wait_for_a_transfer_under_way() -> None:
    """Ctrl-C during a push of a 700 MB blob ends the push now, not after that blob."""
    running = threading.Event()
    release = threading.Event()
    finished: list[int] = []

    def work(n: int) -> int:
        if n == 0:
            running.set()
            release.wait(60)
        finished.append(n)
        return n

    def press_ctrl_c() -> None:
        running.wait(60)
        _thread.interrupt_main()

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            each(work, [0, 1, 2, 3], 2)
        assert 0 not in finished  # raised while blob 0 was still on its way
    finally:
        release.set()
