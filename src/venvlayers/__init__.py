"""venvlayers: package Python applications as layered virtual environment stacks."""

from __future__ import annotations

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
from .spec.stack import (
    ApplicationSpec,
    FrameworkSpec,
    LayeredSpec,
    LayerSpec,
    RuntimeSpec,
    StackSpec,
)

# the single source of the version (pyproject.toml reads it); importlib.metadata
# would cost ~0.1 s at every start of the CLI
__version__ = "0.1.0"

__all__ = [
    "ApplicationSpec",
    "ArchiveError",
    "BuildError",
    "DeployError",
    "FrameworkSpec",
    "LayerSpec",
    "LayeredSpec",
    "LockError",
    "PublishError",
    "RuntimeSourceError",
    "RuntimeSpec",
    "SpecError",
    "StackSpec",
    "TargetPlatform",
    "VenvLayersError",
    "__version__",
]
