"""The layer graph: C3 ordering of frameworks, `--include` selection, dependency order.

Works on any layer objects through small accessor callables / the `LayerSpec`
attributes, so it can be tested with plain values.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ..errors import SelectionError

if TYPE_CHECKING:
    from .stack import LayerSpec, StackSpec

__all__ = ["Selection", "c3_linearize", "dependency_levels", "derived_layers", "select_layers"]

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


def derived_layers(stack: StackSpec, layers: Iterable[LayerSpec]) -> list[LayerSpec]:
    """Enabled layers that build on any of `layers`, directly or through others."""
    targets = set(map(id, layers))
    return [
        layer
        for layer in stack.layers()
        if id(layer) not in targets and any(id(low) in targets for low in layer.lower_layers)
    ]


@dataclass(frozen=True)
class Selection:
    """The layers an `--include` run works on, in stack order."""

    matched: tuple[LayerSpec, ...]
    dependencies: tuple[LayerSpec, ...]
    derived: tuple[LayerSpec, ...]

    @property
    def layers(self) -> list[LayerSpec]:
        chosen = {id(x) for x in (*self.matched, *self.dependencies, *self.derived)}
        order = [*self.dependencies, *self.matched, *self.derived]
        ordered = sorted({id(x): x for x in order}.values(), key=lambda x: (_rank(x), x.index))
        return [x for x in ordered if id(x) in chosen]


def _rank(layer: LayerSpec) -> int:
    return ["runtimes", "frameworks", "applications"].index(layer.category.value)


def select_layers(
    stack: StackSpec,
    patterns: Sequence[str] | None,
    *,
    dependencies: bool = True,
    derived: bool = True,
    allow_missing: bool = False,
) -> Selection:
    """Layers whose build name matches any pattern, plus their dependencies and derived layers.

    With no patterns, every enabled layer is matched. A pattern matching nothing is
    an error unless `allow_missing` (useful in scripts over several stacks).
    """
    enabled = stack.layers()
    if not patterns:
        return Selection(tuple(enabled), (), ())
    matched = [x for x in enabled if any(fnmatch.fnmatchcase(x.build_name, p) for p in patterns)]
    unmatched = [
        p for p in patterns if not any(fnmatch.fnmatchcase(x.build_name, p) for x in enabled)
    ]
    if unmatched and not allow_missing:
        names = ", ".join(x.build_name for x in enabled) or "none"
        raise SelectionError(
            f"--include {', '.join(repr(p) for p in unmatched)} matches no layer of "
            f"{stack.path.name} (layers: {names}); fix the pattern or pass --allow-missing"
        )
    matched_ids = {id(x) for x in matched}
    deps: dict[int, LayerSpec] = {}
    if dependencies:
        for layer in matched:
            for low in layer.lower_layers:
                if id(low) not in matched_ids:
                    deps[id(low)] = low
    ders: list[LayerSpec] = []
    if derived:
        ders = [x for x in derived_layers(stack, matched) if id(x) not in matched_ids]
    return Selection(tuple(matched), tuple(deps.values()), tuple(ders))


def dependency_levels(layers: Sequence[LayerSpec]) -> list[list[LayerSpec]]:
    """Group `layers` so that each group only depends on earlier groups (for parallel work)."""
    present = {id(x) for x in layers}
    depth: dict[int, int] = {}

    def level(layer: LayerSpec) -> int:
        if id(layer) not in depth:
            lows = [low for low in layer.lower_layers if id(low) in present]
            depth[id(layer)] = 1 + max((level(low) for low in lows), default=-1)
        return depth[id(layer)]

    groups: dict[int, list[LayerSpec]] = {}
    for layer in layers:
        groups.setdefault(level(layer), []).append(layer)
    return [groups[k] for k in sorted(groups)]
