"""What is known about each layer on disk, for read-only views such as `show`."""

from __future__ import annotations

from ..locking.state import evaluate_locks
from ..names import DeployName
from ..spec.stack import LayerSpec, StackSpec
from .overview import LockInfo

__all__ = [
    "lock_info_for",
]


def lock_info_for(stack: StackSpec) -> LockInfo:
    """(has a valid lock, deployed name) per layer, computed once for the whole stack."""
    states = evaluate_locks(stack)

    def info(layer: LayerSpec) -> tuple[bool, DeployName | None]:
        state = states.get(layer.build_name)
        if state is None:
            return False, None if layer.versioned else DeployName(layer.build_name)
        return state.valid, state.deploy_name

    return info
