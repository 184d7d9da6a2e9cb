"""C3 linearization: the order of a framework's lower frameworks on `sys.path`.

Works on any values through accessor callables, so it can be tested with plain strings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["c3_linearize"]

T = TypeVar("T")


def c3_linearize(
    declared: Sequence[T],
    linearized_deps: Callable[[T], Sequence[T]],
    name: Callable[[T], str],
) -> list[T]:
    """Merge `declared` and each one's own (already linearized) dependencies, C3 style.

    The result is the `sys.path` priority order: a layer always comes before the
    layers it depends on, and the declared order is kept. This is Python's MRO
    algorithm; a `ValueError` describes an order that cannot be satisfied.
    """
    sequences = [[item, *linearized_deps(item)] for item in declared]
    sequences.append(list(declared))
    result: list[T] = []
    while True:
        sequences = [seq for seq in sequences if seq]
        if not sequences:
            return result
        for seq in sequences:
            head = seq[0]
            if not any(head in other[1:] for other in sequences):
                break
        else:
            orders = "; ".join(" > ".join(name(x) for x in seq) for seq in sequences)
            raise ValueError(f"no consistent framework order exists (conflicting orders: {orders})")
        result.append(head)
        for seq in sequences:
            if seq and seq[0] is head:
                del seq[0]
