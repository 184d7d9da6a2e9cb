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
)
from .errors import (
    BuildError as BuildError,
)
from .errors import (
    DeployError as DeployError,
)
from .errors import (
    LockError as LockError,
)
from .errors import (
    PublishError as PublishError,
)
from .errors import (
    RuntimeSourceError as RuntimeSourceError,
)
from .errors import (
    SelectionError as SelectionError,
)
from .errors import (
    SpecError as SpecError,
)
from .errors import (
    ToolError as ToolError,
)
from .errors import (
    VenvLayersError as VenvLayersError,
)
from .progress import NULL_REPORTER as NULL_REPORTER
from .progress import Reporter as Reporter

if TYPE_CHECKING:
    from .building import (
        BuildOptions as BuildOptions,
    )
    from .building import (
        LayerBuildResult as LayerBuildResult,
    )
    from .building import (
        build_stack as build_stack,
    )
    from .deploying import (
        DeployResult as DeployResult,
    )
    from .deploying import (
        RemoveResult as RemoveResult,
    )
    from .deploying import (
        TargetStatus as TargetStatus,
    )
    from .deploying import (
        deploy as deploy,
    )
    from .deploying import (
        remove as remove,
    )
    from .deploying import (
        run_app as run_app,
    )
    from .deploying import (
        status as status,
    )
    from .locking import (
        LayerLockResult as LayerLockResult,
    )
    from .locking import (
        LockOptions as LockOptions,
    )
    from .locking import (
        lock_stack as lock_stack,
    )
    from .platforms import TargetPlatform as TargetPlatform
    from .publishing import (
        ExportOptions as ExportOptions,
    )
    from .publishing import (
        LayerOutput as LayerOutput,
    )
    from .publishing import (
        PublishOptions as PublishOptions,
    )
    from .publishing import (
        export_stack as export_stack,
    )
    from .publishing import (
        publish_stack as publish_stack,
    )
    from .spec import (
        ApplicationSpec as ApplicationSpec,
    )
    from .spec import (
        FrameworkSpec as FrameworkSpec,
    )
    from .spec import (
        LayeredSpec as LayeredSpec,
    )
    from .spec import (
        LayerSpec as LayerSpec,
    )
    from .spec import (
        RuntimeSpec as RuntimeSpec,
    )
    from .spec import (
        StackSpec as StackSpec,
    )

# the single source of the version (pyproject.toml reads it); importlib.metadata
# would cost ~0.1 s at every start of the CLI
__version__ = "0.1.0"

__getattr__, __dir__, _lazy_names = lazy_exports(
    __name__,
    {
        "spec": [
            "ApplicationSpec",
            "FrameworkSpec",
            "LayerSpec",
            "LayeredSpec",
            "RuntimeSpec",
            "StackSpec",
        ],
        "platforms": ["TargetPlatform"],
        "locking": ["LayerLockResult", "LockOptions", "lock_stack"],
        "building": ["BuildOptions", "LayerBuildResult", "build_stack"],
        "publishing": [
            "ExportOptions",
            "LayerOutput",
            "PublishOptions",
            "export_stack",
            "publish_stack",
        ],
        "deploying": [
            "DeployResult",
            "RemoveResult",
            "TargetStatus",
            "deploy",
            "remove",
            "run_app",
            "status",
        ],
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
