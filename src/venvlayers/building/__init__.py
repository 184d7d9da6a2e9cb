"""Building: layer environments that chain at run time, relocatable and exact."""

from __future__ import annotations

from .build import BuildOptions, LayerBuildResult, build_stack

__all__ = ["BuildOptions", "LayerBuildResult", "build_stack"]
