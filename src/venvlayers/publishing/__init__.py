"""Publishing: layer archives plus venvstacks metadata, and local exports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._util.lazy import lazy_exports

if TYPE_CHECKING:
    from .publish import (
        ExportOptions as ExportOptions,
    )
    from .publish import (
        LayerOutput as LayerOutput,
    )
    from .publish import (
        PublishOptions as PublishOptions,
    )
    from .publish import (
        export_stack as export_stack,
    )
    from .publish import (
        publish_stack as publish_stack,
    )

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "publish": [
            "ExportOptions",
            "LayerOutput",
            "PublishOptions",
            "export_stack",
            "publish_stack",
        ],
    },
)
