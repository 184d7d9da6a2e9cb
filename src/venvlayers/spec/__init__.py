"""The stack spec (`venvstacks.toml`): reading, validating, and the layer types it yields."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._util.lazy import lazy_exports

if TYPE_CHECKING:
    from .graph import (
        dependency_levels as dependency_levels,
    )
    from .graph import (
        select_layers as select_layers,
    )
    from .stack import (
        ApplicationSpec as ApplicationSpec,
    )
    from .stack import (
        FrameworkSpec as FrameworkSpec,
    )
    from .stack import (
        LayeredSpec as LayeredSpec,
    )
    from .stack import (
        LayerSpec as LayerSpec,
    )
    from .stack import (
        RuntimeSpec as RuntimeSpec,
    )
    from .stack import (
        StackSpec as StackSpec,
    )

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "graph": ["dependency_levels", "select_layers"],
        "stack": [
            "ApplicationSpec",
            "FrameworkSpec",
            "LayerSpec",
            "LayeredSpec",
            "RuntimeSpec",
            "StackSpec",
        ],
    },
)
