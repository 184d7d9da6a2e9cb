"""venvlayers: package Python applications as layered virtual environment stacks."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .errors import (
    ArchiveError,
    BuildError,
    DeployError,
    LockError,
    PublishError,
    RuntimeSourceError,
    SpecError,
    VenvLayersError,
)
from .platforms import TargetPlatform

try:
    __version__ = version("venvlayers")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0+unknown"

__all__ = [
    "ArchiveError",
    "BuildError",
    "DeployError",
    "LockError",
    "PublishError",
    "RuntimeSourceError",
    "SpecError",
    "TargetPlatform",
    "VenvLayersError",
    "__version__",
]
