"""The `venvlayers` command line: a thin layer over the Python API."""

from __future__ import annotations

from .main import main, run

__all__ = ["main", "run"]
