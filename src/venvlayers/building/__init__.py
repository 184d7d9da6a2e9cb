"""Building: layer environments that chain at run time, relocatable and exact."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._util.lazy import lazy_exports

if TYPE_CHECKING:
    from .build import (
        BuildOptions as BuildOptions,
        LayerBuildResult as LayerBuildResult,
        build_stack as build_stack,
    )

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "build": "BuildOptions LayerBuildResult build_stack",
    },
)
