"""venvlayers: package Python applications as layered virtual environment stacks.

The stable API, what scripts use (see `docs/api.md`)::

    stack = venvlayers.StackSpec.load("venvstacks.toml")
    venvlayers.lock_stack(stack)
    venvlayers.build_stack(stack)
    venvlayers.publish_stack(stack)
    venvlayers.deploy("_artifacts", "/opt/apps")
    venvlayers.run_app("classify", location="/opt/apps", args=["--help"])

Names are imported on first use, so `import venvlayers` is cheap whatever is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._util.lazy import lazy_exports
from .errors import (
    ArchiveError as ArchiveError,
    BuildError as BuildError,
    DeployError as DeployError,
    LockError as LockError,
    PublishError as PublishError,
    RuntimeSourceError as RuntimeSourceError,
    SelectionError as SelectionError,
    SpecError as SpecError,
    ToolError as ToolError,
    VenvLayersError as VenvLayersError,
)
from .progress import NULL_REPORTER as NULL_REPORTER, Reporter as Reporter

if TYPE_CHECKING:
    from .building import (
        BuildOptions as BuildOptions,
        LayerBuildResult as LayerBuildResult,
        build_stack as build_stack,
    )
    from .deploying import (
        DeployResult as DeployResult,
        RemoveResult as RemoveResult,
        TargetStatus as TargetStatus,
        deploy as deploy,
        remove as remove,
        run_app as run_app,
        status as status,
    )
    from .locking import (
        LayerLockResult as LayerLockResult,
        LockOptions as LockOptions,
        lock_stack as lock_stack,
    )
    from .platforms import TargetPlatform as TargetPlatform
    from .publishing import (
        ExportOptions as ExportOptions,
        LayerOutput as LayerOutput,
        PublishOptions as PublishOptions,
        export_stack as export_stack,
        publish_stack as publish_stack,
    )
    from .spec import (
        ApplicationSpec as ApplicationSpec,
        FrameworkSpec as FrameworkSpec,
        LayeredSpec as LayeredSpec,
        LayerSpec as LayerSpec,
        RuntimeSpec as RuntimeSpec,
        StackSpec as StackSpec,
    )

# the single source of the version (pyproject.toml reads it); importlib.metadata
# would cost ~0.1 s at every start of the CLI
__version__ = "0.1.0"

__getattr__, __dir__, _lazy_names = lazy_exports(
    __name__,
    {
        "spec": ("ApplicationSpec FrameworkSpec LayerSpec LayeredSpec RuntimeSpec StackSpec"),
        "platforms": "TargetPlatform",
        "locking": "LayerLockResult LockOptions lock_stack",
        "building": "BuildOptions LayerBuildResult build_stack",
        "publishing": "ExportOptions LayerOutput PublishOptions export_stack publish_stack",
        "deploying": "DeployResult RemoveResult TargetStatus deploy remove run_app status",
    },
)

__all__ = sorted(
    [
        *_lazy_names,
        "NULL_REPORTER",
        "ArchiveError",
        "BuildError",
        "DeployError",
        "LockError",
        "PublishError",
        "Reporter",
        "RuntimeSourceError",
        "SelectionError",
        "SpecError",
        "ToolError",
        "VenvLayersError",
        "__version__",
    ]
)
