"""What is known about each layer on disk, for read-only views such as `show`."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..locking.state import LockState, evaluate_locks
from ..names import BuildName, DeployName
from ..spec.stack import LayerSpec, StackSpec
from .overview import LockInfo

__all__ = [
    "lock_info_for",
    "lock_reason_for",
]


def lock_info_for(
    stack: StackSpec, states: Mapping[BuildName, LockState] | None = None
) -> LockInfo:
    """(has a valid lock, deployed name) per layer, computed once for the whole stack."""
    states = evaluate_locks(stack) if states is None else states

    def info(layer: LayerSpec) -> tuple[bool, DeployName | None]:
        state = states.get(layer.build_name)
        if state is None:
            return False, None if layer.versioned else DeployName(layer.build_name)
        return state.valid, state.deploy_name

    return info


def lock_reason_for(
    stack: StackSpec, states: Mapping[BuildName, LockState] | None = None
) -> Callable[[LayerSpec], str | None]:
    """Why a layer's lock is not valid, `adopted the venvstacks lock`, or None."""
    states = evaluate_locks(stack) if states is None else states

    def reason(layer: LayerSpec) -> str | None:
        state = states.get(layer.build_name)
        return "not locked yet" if state is None else state.reason

    return reason
