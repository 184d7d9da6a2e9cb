"""Choosing and ordering spec layers: `--include` selection and dependency levels.

The mechanism is `venvlayers.selection`, shared with deploy; this module says what
`--include PATTERN` means for the layers of a spec.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from ..errors import SelectionError
from ..names import BuildName
from ..selection import Selection, dependency_levels as _levels, select
from .stack import LayerSpec, StackSpec

__all__ = ["dependency_levels", "select_layers"]


def _lower(layer: LayerSpec) -> tuple[LayerSpec, ...]:
    return layer.lower_layers


def _key(layer: LayerSpec) -> BuildName:
    return layer.build_name


def select_layers(
    stack: StackSpec,
    patterns: Sequence[str] | None,
    *,
    dependencies: bool = True,
    derived: bool = True,
    allow_missing: bool = False,
) -> Selection[LayerSpec]:
    """Layers whose build name matches any pattern, plus their dependencies and derived layers.

    With no patterns, every enabled layer is matched. A pattern matching nothing is
    an error unless `allow_missing` (useful in scripts over several stacks).
    """
    enabled = stack.layers()
    if not patterns:
        return select(enabled, enabled, _lower, _key, full=True)
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
    return select(enabled, matched, _lower, _key, dependencies=dependencies, derived=derived)


def dependency_levels(layers: Sequence[LayerSpec]) -> list[list[LayerSpec]]:
    """Group `layers` so that each group only depends on earlier groups (for parallel work)."""
    return _levels(layers, _lower, _key)
