"""`venvlayers build`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .. import building, locking, planning, publishing, spec as spec_api
from ..archives.common import DEFAULT_FORMAT
from ..bytecode import SHIPPED_SHARE
from .common import OUT, RichReporter, app, print_json
from .lock import render_lock_results
from .options import (
    DEFAULT_SPEC,
    AllowMissingOpt,
    BuildDirOpt,
    BytecodeOpt,
    BytecodeShareOpt,
    FormatOpt,
    IncludeOpt,
    IndexOpt,
    JsonOpt,
    LocalWheelsOpt,
    OutputDirOpt,
    PublishDependenciesOpt,
    PublishDerivedOpt,
    SignKeyOpt,
    SpecArg,
    TagOpt,
)
from .publish import load_sign_key, outputs_json, render_outputs
from .show import render_tree

__all__ = [
    "build",
    "render_build_results",
]


@app.command()
def build(
    spec: SpecArg = DEFAULT_SPEC,
    build_dir: BuildDirOpt = None,
    include: IncludeOpt = None,
    allow_missing: AllowMissingOpt = False,
    build_dependencies: Annotated[
        bool,
        typer.Option("--build-dependencies", help="With --include: also update the layers below."),
    ] = False,
    build_derived: Annotated[
        bool,
        typer.Option("--build-derived", help="With --include: also rebuild the layers above."),
    ] = False,
    clean: Annotated[bool, typer.Option("--clean", help="Rebuild from scratch.")] = False,
    lock_if_needed: Annotated[
        bool, typer.Option("--lock-if-needed", help="Lock layers without a valid lock first.")
    ] = False,
    local_wheels: LocalWheelsOpt = None,
    index: IndexOpt = True,
    publish: Annotated[
        bool,
        typer.Option("--publish", help="Publish the built layers too (the publish options apply)."),
    ] = False,
    output_dir: OutputDirOpt = None,
    publish_dependencies: PublishDependenciesOpt = False,
    publish_derived: PublishDerivedOpt = False,
    fmt: FormatOpt = DEFAULT_FORMAT,
    tag_outputs: TagOpt = False,
    compile_bytecode: BytecodeOpt = False,
    bytecode_share: BytecodeShareOpt = SHIPPED_SHARE,
    sign_key: SignKeyOpt = None,
    show: Annotated[bool, typer.Option("--show", help="Show the selected layers first.")] = False,
    show_only: Annotated[
        bool, typer.Option("--show-only", help="Only show what would be done.")
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Build layer environments from their locks (in `_build/<layer>/`).

    Unchanged layers are skipped; independent layers build in parallel. The result
    runs in place (`venvlayers run APP --target _build`) and after moving the whole
    build directory.
    """
    stack = spec_api.StackSpec.load(Path(spec))
    key = load_sign_key(sign_key) if publish else None
    patterns = tuple(include or ())
    if show or show_only:
        _show_plan(stack, patterns, allow_missing, lock_if_needed, build_derived)
        if show_only:
            return
    with RichReporter() as reporter:
        if lock_if_needed:
            locked = locking.lock_stack(
                stack,
                locking.LockOptions(
                    include=patterns,
                    allow_missing=allow_missing,
                    if_needed=True,
                    local_wheels=tuple(local_wheels or ()),
                    use_index=index,
                ),
                reporter,
            )
            if any(r.action != "valid" for r in locked) and not json_output:
                render_lock_results([r for r in locked if r.action != "valid"])
        results = building.build_stack(
            stack,
            building.BuildOptions(
                build_dir=_resolve(stack, build_dir),
                include=patterns,
                allow_missing=allow_missing,
                build_dependencies=build_dependencies,
                build_derived=build_derived,
                clean=clean,
                local_wheels=tuple(local_wheels or ()),
            ),
            reporter,
        )
        published = []
        if publish:
            published = publishing.publish_stack(
                stack,
                publishing.PublishOptions(
                    build_dir=_resolve(stack, build_dir),
                    output_dir=None if output_dir is None else output_dir.absolute(),
                    include=patterns,
                    allow_missing=allow_missing,
                    publish_dependencies=publish_dependencies,
                    publish_derived=publish_derived,
                    fmt=fmt,
                    tag_outputs=tag_outputs,
                    compile_bytecode=compile_bytecode,
                    bytecode_share=bytecode_share,
                    sign_key=key,
                ),
                reporter,
            )
    if json_output:
        data: dict[str, object] = {"built": [_as_json(r) for r in results]}
        if publish:
            data["published"] = outputs_json(published)
        print_json(data)
        return
    render_build_results(results)
    if publish:
        render_outputs(published, False)


def _resolve(stack: spec_api.StackSpec, build_dir: Path | None) -> Path | None:
    if build_dir is None:
        return None
    return build_dir if build_dir.is_absolute() else Path.cwd() / build_dir


def _show_plan(
    stack: spec_api.StackSpec,
    patterns: tuple[str, ...],
    allow_missing: bool,
    lock_if_needed: bool,
    derived: bool,
) -> None:
    selection = spec_api.select_layers(
        stack, patterns or None, derived=derived, allow_missing=allow_missing
    )
    chosen = {x.build_name for x in (*selection.matched, *selection.derived)}

    def operations(layer: spec_api.LayerSpec) -> list[str]:
        ops = ["lock-if-needed"] if lock_if_needed else []
        ops.append("build" if layer.build_name in chosen or not patterns else "build-if-needed")
        return ops

    status = planning.stack_status(
        stack,
        planning.lock_info_for(stack),
        include=patterns or None,
        allow_missing=allow_missing,
        operations=operations,
    )
    render_tree(planning.status_tree_lines(status))


def _as_json(result: building.LayerBuildResult) -> dict[str, object]:
    return {
        "layer": result.build_name,
        "install_target": result.deploy_name,
        "action": result.action,
        "path": str(result.path),
        "seconds": round(result.seconds, 3),
        "packages": result.packages,
    }


def render_build_results(results: list[building.LayerBuildResult]) -> None:
    if OUT.quiet:
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("layer", "result", "packages", "ready after", "path"):
        table.add_column(column)
    for r in results:
        took = f"{r.seconds:.1f}s" if r.action == "built" else ""
        table.add_row(str(r.deploy_name), r.action, str(r.packages), took, str(r.path))
    OUT.stdout.print(table)
