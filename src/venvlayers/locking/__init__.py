"""Locking: each layer resolved with uv against its lower layers' pins, into PEP 751 locks.

Lock files live in `requirements/<build-name>/` in venvstacks' layout (`files`); whether
a lock is still valid for the spec is `state`'s business.
"""

from __future__ import annotations

from .lock import LayerLockResult, LockOptions, lock_stack, lower_pins
from .state import LockState, evaluate_locks

__all__ = [
    "LayerLockResult",
    "LockOptions",
    "LockState",
    "evaluate_locks",
    "lock_stack",
    "lower_pins",
]
