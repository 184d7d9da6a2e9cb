"""The three names of a layer, kept apart by type.

- `LayerName`: the `name` a spec gives a layer (`sci`).
- `BuildName`: the layer's name in the build and lock directories (`framework-sci`).
- `DeployName`: the folder it is installed into (`framework-sci@3` when versioned).

Mixing them up is the classic bug of this domain, so functions say which one they take.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NewType

__all__ = ["BuildName", "DeployName", "LayerCategory", "LayerName"]

LayerName = NewType("LayerName", str)
BuildName = NewType("BuildName", str)
DeployName = NewType("DeployName", str)


class LayerCategory(StrEnum):
    """The three kinds of layer, named as the spec's table arrays."""

    RUNTIMES = "runtimes"
    FRAMEWORKS = "frameworks"
    APPLICATIONS = "applications"

    @property
    def prefix(self) -> str:
        """The build-name prefix of the category ('' for runtimes)."""
        return {"runtimes": "", "frameworks": "framework-", "applications": "app-"}[self.value]

    @property
    def singular(self) -> str:
        return {"runtimes": "runtime", "frameworks": "framework", "applications": "app"}[self.value]

    def build_name(self, name: LayerName) -> BuildName:
        return BuildName(f"{self.prefix}{name}")
