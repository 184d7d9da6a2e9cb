"""Deploying published stacks onto target machines: deploy, run, status, remove.

A deploy checks everything it can before it touches the target, stages each changed
layer beside the target, and swaps it in atomically; see `operations` for the phases
and `state` for what a target remembers.
"""

from __future__ import annotations

from .inspection import AppStatus, LayerStatus, TargetStatus, status
from .operations import DeployResult, LayerResult, RemoveResult, deploy, remove
from .run import AppCommand, app_command, app_environment, run_app

__all__ = [
    "AppCommand",
    "AppStatus",
    "DeployResult",
    "LayerResult",
    "LayerStatus",
    "RemoveResult",
    "TargetStatus",
    "app_command",
    "app_environment",
    "deploy",
    "remove",
    "run_app",
    "status",
]
