"""Planning: from a spec and its locks to the work of build and publish."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._util.lazy import lazy_exports

if TYPE_CHECKING:
    from .lockinfo import (
        lock_info_for as lock_info_for,
    )
    from .overview import (
        stack_status as stack_status,
    )
    from .overview import (
        status_tree_lines as status_tree_lines,
    )
    from .plan import (
        BUILD_FORMAT as BUILD_FORMAT,
    )
    from .plan import (
        LayerPlan as LayerPlan,
    )
    from .plan import (
        StackPlan as StackPlan,
    )
    from .plan import (
        plan_selected as plan_selected,
    )
    from .plan import (
        plan_stack as plan_stack,
    )
    from .plan import (
        read_stamp as read_stamp,
    )

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "plan": [
            "BUILD_FORMAT",
            "LayerPlan",
            "StackPlan",
            "plan_selected",
            "plan_stack",
            "read_stamp",
        ],
        "overview": ["stack_status", "status_tree_lines"],
        "lockinfo": ["lock_info_for"],
    },
)
