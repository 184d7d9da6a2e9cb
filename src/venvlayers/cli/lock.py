"""`venvlayers lock`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .. import locking, spec as spec_api
from .common import OUT, RichReporter, app, print_json
from .options import (
    DEFAULT_SPEC,
    AllowMissingOpt,
    IncludeOpt,
    IndexOpt,
    JsonOpt,
    LocalWheelsOpt,
    SpecArg,
)

__all__ = [
    "lock",
    "render_lock_results",
]


@app.command()
def lock(
    spec: SpecArg = DEFAULT_SPEC,
    include: IncludeOpt = None,
    allow_missing: AllowMissingOpt = False,
    if_needed: Annotated[
        bool, typer.Option("--if-needed", help="Only relock layers whose lock is not valid.")
    ] = False,
    lock_dependencies: Annotated[
        bool,
        typer.Option(
            "--lock-dependencies", help="With --include: relock the layers they build on too."
        ),
    ] = False,
    reset_lock: Annotated[
        list[str] | None,
        typer.Option(
            "--reset-lock",
            metavar="PATTERN",
            help="Relock matching layers from scratch, ignoring their previous pins.",
        ),
    ] = None,
    upgrade: Annotated[
        bool, typer.Option("--upgrade", "-U", help="Allow every pin to move to newer versions.")
    ] = False,
    upgrade_package: Annotated[
        list[str] | None,
        typer.Option("--upgrade-package", "-P", metavar="NAME", help="Allow this pin to move."),
    ] = None,
    local_wheels: LocalWheelsOpt = None,
    index: IndexOpt = True,
    json_output: JsonOpt = False,
) -> None:
    """Lock every layer's requirements (integrated across layers, cross-platform, stable).

    Writes `requirements/<layer>/pylock.<layer>.toml`, its `.meta.json` and a
    `packages-<layer>.txt` summary. Relocking keeps existing pins unless --upgrade or
    --upgrade-package asks to move them. A lock venvstacks wrote that still matches the
    spec is adopted: rewritten in this format with the same pins, lock version and
    lock time.
    """

    stack = spec_api.StackSpec.load(Path(spec))
    options = locking.LockOptions(
        include=tuple(include or ()),
        allow_missing=allow_missing,
        lock_dependencies=lock_dependencies,
        if_needed=if_needed,
        reset_lock=tuple(reset_lock or ()),
        upgrade=upgrade,
        upgrade_packages=tuple(upgrade_package or ()),
        local_wheels=tuple(local_wheels or ()),
        use_index=index,
    )
    with RichReporter() as reporter:
        results = locking.lock_stack(stack, options, reporter)
    if json_output:
        print_json([_as_json(r) for r in results])
        return
    render_lock_results(results)


def _as_json(result: locking.LayerLockResult) -> dict[str, object]:
    return {
        "layer": result.build_name,
        "install_target": result.deploy_name,
        "action": result.action,
        "reason": result.reason,
        "lock_version": result.lock_version,
        "locked_at": result.locked_at,
        "packages": result.packages,
        "shared_packages": result.shared,
        "lock_file": str(result.lock_path),
    }


def render_lock_results(results: list[locking.LayerLockResult]) -> None:
    if OUT.quiet:
        return
    table = Table(title=None, show_edge=False, header_style="bold")
    for column in ("layer", "result", "version", "packages", "from below", "why"):
        table.add_column(column)
    for r in results:
        table.add_row(
            str(r.deploy_name),
            {
                "locked": "locked (changed)",
                "relocked": "same pins",
                "valid": "valid",
                "adopted": "adopted",
            }[r.action],
            str(r.lock_version),
            str(r.packages),
            str(r.shared),
            r.reason or "",
        )
    OUT.stdout.print(table)
