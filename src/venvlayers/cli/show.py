"""`venvlayers show`."""

from __future__ import annotations

from pathlib import Path

from rich.tree import Tree

from .. import locking, planning, spec as spec_api
from .common import OUT, app, print_json
from .options import DEFAULT_SPEC, AllowMissingOpt, IncludeOpt, JsonOpt, SpecArg

__all__ = [
    "render_tree",
    "show",
]


@app.command()
def show(
    spec: SpecArg = DEFAULT_SPEC,
    include: IncludeOpt = None,
    allow_missing: AllowMissingOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Show the stack: layers by category, each with its dependencies in sys.path order.

    A leading `*` marks a layer without a valid lock; versioned layers show
    `build-name -> deployed-name`. Disabled layers (platforms = []) are left out.
    With --json, each layer also has a `reason`: why its lock is not valid, `adopted
    the venvstacks lock` for a venvstacks lock that still matches, else null.
    """
    stack = spec_api.StackSpec.load(Path(spec))
    states = locking.evaluate_locks(stack)
    status = planning.stack_status(
        stack,
        planning.lock_info_for(stack, states),
        include=include,
        allow_missing=allow_missing,
        reason=planning.lock_reason_for(stack, states) if json_output else None,
    )
    if json_output:
        print_json(status)
        return
    render_tree(planning.status_tree_lines(status))


def render_tree(rows: list[tuple[int, str]]) -> None:
    root = Tree(rows[0][1])
    stack: list[Tree] = [root]
    for depth, label in rows[1:]:
        del stack[depth:]
        node = stack[-1].add(label)
        stack.append(node)
    OUT.stdout.print(root)
