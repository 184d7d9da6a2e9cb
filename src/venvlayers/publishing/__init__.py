"""Publishing: layer archives plus venvstacks metadata, and local exports."""

from __future__ import annotations

from .publish import ExportOptions, LayerOutput, PublishOptions, export_stack, publish_stack

__all__ = ["ExportOptions", "LayerOutput", "PublishOptions", "export_stack", "publish_stack"]
