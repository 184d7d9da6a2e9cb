"""The stack spec (`venvstacks.toml`): reading, validating, and the layer types it yields."""

from __future__ import annotations

from .stack import (
    ApplicationSpec,
    FrameworkSpec,
    LayeredSpec,
    LayerSpec,
    RuntimeSpec,
    StackSpec,
)

__all__ = [
    "ApplicationSpec",
    "FrameworkSpec",
    "LayerSpec",
    "LayeredSpec",
    "RuntimeSpec",
    "StackSpec",
]
