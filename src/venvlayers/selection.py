"""Choosing layers of a stack: the ones asked for, what they stand on, what stands on them.

One concept serves every stage that works on part of a stack: `lock`/`build`/`publish`
with `--include` choose spec layers by pattern, `deploy --app` chooses published layers
by name. Each stage decides what "asked for" means; the closure over lower layers, the
layers derived from the chosen ones and the order (lower layers first) are computed
here, once, for any kind of layer.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["CycleError", "Selection", "dependency_levels", "lower_first", "select"]

L = TypeVar("L")


class CycleError(ValueError):
    """The layers' lower-layer links form a cycle; `path` lists the keys around it."""

    def __init__(self, path: Sequence[str]) -> None:
        super().__init__(" -> ".join(path))
        self.path = tuple(path)


@dataclass(frozen=True)
class Selection(Generic[L]):
    """What a run works on: chosen layers by role, and all of them lower layers first."""

    matched: tuple[L, ...]
    """The layers asked for (every layer when `full`)."""
    dependencies: tuple[L, ...]
    """Lower layers of the matched ones that were not asked for themselves."""
    derived: tuple[L, ...]
    """Layers built on the matched ones that were not asked for themselves."""
    layers: tuple[L, ...]
    """All of the above, each after the layers it stands on, else in the stack's order."""
    full: bool
    """True when nothing was named: the run covers the whole stack."""


def select(
    stack: Sequence[L],
    matched: Iterable[L],
    lower: Callable[[L], Iterable[L]],
    key: Callable[[L], Hashable],
    *,
    dependencies: bool = True,
    derived: bool = False,
    full: bool = False,
) -> Selection[L]:
    """Close `matched` over lower layers (all of them, transitively) and derived layers.

    `stack` is every layer in the stack's own order, which breaks ties in the result;
    `lower(layer)` gives the layers it stands on directly or not, `key` identifies one.
    """
    chosen = {key(x): x for x in matched}
    deps: dict[Hashable, L] = {}
    if dependencies:
        pending = deque(low for layer in chosen.values() for low in lower(layer))
        while pending:  # first found first: the matched layers' own lower-layer order
            layer = pending.popleft()
            k = key(layer)
            if k not in chosen and k not in deps:
                deps[k] = layer
                pending.extend(lower(layer))
    ders: dict[Hashable, L] = {}
    if derived:
        below = set(chosen)
        for layer in lower_first(stack, lower, key):  # an upper layer after its lower ones
            k = key(layer)
            if k not in chosen and any(key(low) in below for low in lower(layer)):
                ders[k] = layer
                below.add(k)
    every = {**deps, **chosen, **ders}
    ordered = lower_first([x for x in stack if key(x) in every], lower, key)
    return Selection(
        matched=tuple(chosen.values()),
        dependencies=tuple(deps.values()),
        derived=tuple(x for x in ordered if key(x) in ders),
        layers=tuple(ordered),
        full=full,
    )


def lower_first(
    layers: Sequence[L], lower: Callable[[L], Iterable[L]], key: Callable[[L], Hashable]
) -> list[L]:
    """`layers` ordered so that each comes after those of its lower layers among them.

    Otherwise the given order is kept. Raises `CycleError` if the links form a cycle.
    """
    present = {key(x) for x in layers}
    state: dict[Hashable, bool] = {}  # False while visiting, True when placed
    ordered: list[L] = []

    def visit(layer: L, path: tuple[str, ...]) -> None:
        k = key(layer)
        if state.get(k) is True:
            return
        if state.get(k) is False:
            raise CycleError([*path, str(k)])
        state[k] = False
        for low in lower(layer):
            if key(low) in present:
                visit(low, (*path, str(k)))
        state[k] = True
        ordered.append(layer)

    for layer in layers:
        visit(layer, ())
    return ordered


def dependency_levels(
    layers: Sequence[L], lower: Callable[[L], Iterable[L]], key: Callable[[L], Hashable]
) -> list[list[L]]:
    """Group `layers` so that each group only depends on earlier groups (for parallel work)."""
    present = {key(x) for x in layers}
    depth: dict[Hashable, int] = {}

    def level(layer: L) -> int:
        k = key(layer)
        if k not in depth:
            lows = [low for low in lower(layer) if key(low) in present]
            depth[k] = 1 + max((level(low) for low in lows), default=-1)
        return depth[k]

    groups: dict[int, list[L]] = {}
    for layer in layers:
        groups.setdefault(level(layer), []).append(layer)
    return [groups[k] for k in sorted(groups)]
