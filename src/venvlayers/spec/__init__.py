"""The stack spec (`venvstacks.toml`): reading, validating, and the layer types it yields."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._util.lazy import lazy_exports

if TYPE_CHECKING:
    from .graph import (
        dependency_levels as dependency_levels,
        select_layers as select_layers,
    )
    from .stack import (
        ApplicationSpec as ApplicationSpec,
        FrameworkSpec as FrameworkSpec,
        LayeredSpec as LayeredSpec,
        LayerSpec as LayerSpec,
        RuntimeSpec as RuntimeSpec,
        StackSpec as StackSpec,
    )

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "graph": "dependency_levels select_layers",
        "stack": ("ApplicationSpec FrameworkSpec LayerSpec LayeredSpec RuntimeSpec StackSpec"),
    },
)
