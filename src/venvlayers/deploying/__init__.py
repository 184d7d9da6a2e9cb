"""Deploying published stacks onto target machines: deploy, run, status, remove.

A deploy checks everything it can before it touches the target, stages each changed
layer beside the target, and swaps it in atomically; see `operations` for the phases
and `state` for what a target remembers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._util.lazy import lazy_exports

if TYPE_CHECKING:
    from .inspection import (
        AppStatus as AppStatus,
        LayerStatus as LayerStatus,
        TargetStatus as TargetStatus,
        status as status,
    )
    from .operations import (
        DeployResult as DeployResult,
        LayerResult as LayerResult,
        RemoveResult as RemoveResult,
        deploy as deploy,
        remove as remove,
    )
    from .run import (
        AppCommand as AppCommand,
        app_command as app_command,
        app_environment as app_environment,
        run_app as run_app,
    )
    from .runfrom import (
        default_run_target as default_run_target,
        deploy_for_run as deploy_for_run,
        run_from as run_from,
    )

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "inspection": "AppStatus LayerStatus TargetStatus status",
        "operations": "DeployResult LayerResult RemoveResult deploy remove",
        "runfrom": "default_run_target deploy_for_run run_from",
        "run": "AppCommand app_command app_environment run_app",
    },
)
