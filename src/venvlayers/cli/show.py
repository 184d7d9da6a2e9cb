"""`venvlayers show`."""

from __future__ import annotations

from pathlib import Path

from rich.tree import Tree

from .common import (
    DEFAULT_SPEC,
    OUT,
    AllowMissingOpt,
    IncludeOpt,
    JsonOpt,
    SpecArg,
    app,
    print_json,
)


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
    """
    from ..planning.lockinfo import lock_info_for
    from ..planning.overview import stack_status, status_tree_lines
    from ..spec.stack import StackSpec

    stack = StackSpec.load(Path(spec))
    status = stack_status(stack, lock_info_for(stack), include=include, allow_missing=allow_missing)
    if json_output:
        print_json(status)
        return
    render_tree(status_tree_lines(status))


def render_tree(rows: list[tuple[int, str]]) -> None:
    root = Tree(rows[0][1])
    stack: list[Tree] = [root]
    for depth, label in rows[1:]:
        del stack[depth:]
        node = stack[-1].add(label)
        stack.append(node)
    OUT.stdout.print(root)
