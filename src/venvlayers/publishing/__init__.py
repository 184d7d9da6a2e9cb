"""Publishing: layer archives plus venvstacks metadata, and local exports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._util.lazy import lazy_exports

if TYPE_CHECKING:
    from .publish import (
        ExportOptions as ExportOptions,
        LayerOutput as LayerOutput,
        PublishOptions as PublishOptions,
        export_stack as export_stack,
        publish_stack as publish_stack,
    )
    from .sign import SignedStack as SignedStack, sign_stack as sign_stack

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "sign": "SignedStack sign_stack",
        "publish": "ExportOptions LayerOutput PublishOptions export_stack publish_stack",
    },
)
