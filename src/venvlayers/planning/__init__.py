"""Planning: from a spec and its locks to the work of build and publish."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._util.lazy import lazy_exports

if TYPE_CHECKING:
    from .lockinfo import (
        lock_info_for as lock_info_for,
        lock_reason_for as lock_reason_for,
    )
    from .overview import (
        stack_status as stack_status,
        status_tree_lines as status_tree_lines,
    )
    from .plan import (
        BUILD_FORMAT as BUILD_FORMAT,
        LayerPlan as LayerPlan,
        StackPlan as StackPlan,
        plan_selected as plan_selected,
        plan_stack as plan_stack,
        read_stamp as read_stamp,
    )

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "plan": "BUILD_FORMAT LayerPlan StackPlan plan_selected plan_stack read_stamp",
        "overview": "stack_status status_tree_lines",
        "lockinfo": "lock_info_for lock_reason_for",
    },
)
