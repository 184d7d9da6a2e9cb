"""Locking: each layer resolved with uv against its lower layers' pins, into PEP 751 locks.

Lock files live in `requirements/<build-name>/` in venvstacks' layout (`files`); whether
a lock is still valid for the spec is `state`'s business.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._util.lazy import lazy_exports

if TYPE_CHECKING:
    from .lock import (
        LayerLockResult as LayerLockResult,
        LockOptions as LockOptions,
        lock_stack as lock_stack,
        lower_pins as lower_pins,
    )
    from .state import (
        LockState as LockState,
        evaluate_locks as evaluate_locks,
    )

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "lock": "LayerLockResult LockOptions lock_stack lower_pins",
        "state": "LockState evaluate_locks",
    },
)
