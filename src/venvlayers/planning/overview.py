"""The stack overview behind `venvlayers show`: layers, their order and lock state.

The JSON form keeps venvstacks' field names (`spec_name`, `runtimes`, `frameworks`,
`applications`; per layer `name`, `install_target`, `has_valid_lock`,
`selected_operations`, `dependencies`), and adds `reason` when asked for: why the lock is
not valid, or `adopted the venvstacks lock`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypedDict

from ..names import DeployName
from ..spec.graph import select_layers
from ..spec.stack import LayerSpec, StackSpec

__all__ = [
    "UNLOCKED_VERSION",
    "LayerStatus",
    "LockInfo",
    "StackStatus",
    "format_layer",
    "stack_status",
    "status_tree_lines",
]


class LayerStatus(TypedDict, total=False):
    name: str
    install_target: str
    has_valid_lock: bool
    selected_operations: list[str] | None
    reason: str | None
    dependencies: list[LayerStatus]


class StackStatus(TypedDict):
    spec_name: str
    runtimes: list[LayerStatus]
    frameworks: list[LayerStatus]
    applications: list[LayerStatus]


# (has_valid_lock, deployed name or None when a versioned layer has no valid lock)
LockInfo = Callable[[LayerSpec], tuple[bool, DeployName | None]]

UNLOCKED_VERSION = "???"


def _layer_status(
    layer: LayerSpec,
    lock_info: LockInfo,
    operations: Callable[[LayerSpec], list[str] | None],
    *,
    with_deps: bool,
    reason: Callable[[LayerSpec], str | None] | None = None,
) -> LayerStatus:
    valid, deployed = lock_info(layer)
    if deployed is None:
        deployed = DeployName(f"{layer.build_name}@{UNLOCKED_VERSION}")
    status = LayerStatus(
        name=layer.build_name,
        install_target=deployed,
        has_valid_lock=valid,
        selected_operations=operations(layer),
    )
    if reason is not None:
        status["reason"] = reason(layer)
    if with_deps and layer.lower_layers:
        status["dependencies"] = [
            _layer_status(low, lock_info, lambda _x: None, with_deps=False, reason=reason)
            for low in layer.lower_layers
        ]
    return status


def stack_status(
    stack: StackSpec,
    lock_info: LockInfo,
    *,
    include: Sequence[str] | None = None,
    allow_missing: bool = False,
    operations: Callable[[LayerSpec], list[str] | None] | None = None,
    reason: Callable[[LayerSpec], str | None] | None = None,
) -> StackStatus:
    """The stack (or the `include` selection with dependencies and derived layers)."""
    chosen = select_layers(stack, include, allow_missing=allow_missing).layers
    ops = operations or (lambda _x: None)

    def by_category(category: str) -> list[LayerStatus]:
        return [
            _layer_status(x, lock_info, ops, with_deps=True, reason=reason)
            for x in chosen
            if x.category.value == category
        ]

    return StackStatus(
        spec_name=str(stack.path),
        runtimes=by_category("runtimes"),
        frameworks=by_category("frameworks"),
        applications=by_category("applications"),
    )


def format_layer(status: LayerStatus) -> str:
    """`*name -> deployed (ops)`: `*` marks a layer without a valid lock."""
    mark = "" if status.get("has_valid_lock") else "*"
    name, target = status["name"], status["install_target"]
    text = f"{mark}{name}" if name == target else f"{mark}{name} -> {target}"
    ops = status.get("selected_operations")
    return f"{text} ({', '.join(ops)})" if ops else text


def status_tree_lines(status: StackStatus) -> list[tuple[int, str]]:
    """(depth, label) rows of the overview, for renderers."""
    rows: list[tuple[int, str]] = [(0, status["spec_name"])]
    for title, key in (
        ("Runtimes", "runtimes"),
        ("Frameworks", "frameworks"),
        ("Applications", "applications"),
    ):
        rows.append((1, title))
        layers: list[LayerStatus] = status[key]  # type: ignore[literal-required]
        for layer in layers:
            rows.append((2, format_layer(layer)))
            rows.extend((3, format_layer(dep)) for dep in layer.get("dependencies", []))
    return rows
