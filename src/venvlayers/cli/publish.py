"""`venvlayers publish` and `venvlayers local-export`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .. import publishing, spec as spec_api
from .._util.fs import human_size
from ..archives.common import DEFAULT_FORMAT
from .common import OUT, RichReporter, app, print_json
from .options import (
    DEFAULT_SPEC,
    AllowMissingOpt,
    BuildDirOpt,
    BytecodeOpt,
    DryRunOpt,
    ForceOpt,
    FormatOpt,
    IncludeOpt,
    JsonOpt,
    LevelOpt,
    OutputDirOpt,
    PublishDependenciesOpt,
    PublishDerivedOpt,
    SpecArg,
    TagOpt,
)

__all__ = [
    "local_export",
    "outputs_json",
    "publish",
    "render_outputs",
]


def _absolute(path: Path | None) -> Path | None:
    return None if path is None else path.absolute()


@app.command()
def publish(
    spec: SpecArg = DEFAULT_SPEC,
    build_dir: BuildDirOpt = None,
    output_dir: OutputDirOpt = None,
    include: IncludeOpt = None,
    allow_missing: AllowMissingOpt = False,
    publish_dependencies: PublishDependenciesOpt = False,
    publish_derived: PublishDerivedOpt = False,
    fmt: FormatOpt = DEFAULT_FORMAT,
    level: LevelOpt = None,
    tag_outputs: TagOpt = False,
    compile_bytecode: BytecodeOpt = False,
    force: ForceOpt = False,
    dry_run: DryRunOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Publish built layers as reproducible archives plus venvstacks-compatible metadata.

    Writes one archive per layer and `__venvstacks__/venvstacks.json` with
    `__venvstacks__/env_metadata/<layer>.json` into the output directory. Unchanged
    layers are skipped.
    """
    stack = spec_api.StackSpec.load(Path(spec))
    options = publishing.PublishOptions(
        build_dir=_absolute(build_dir),
        output_dir=_absolute(output_dir),
        include=tuple(include or ()),
        allow_missing=allow_missing,
        publish_dependencies=publish_dependencies,
        publish_derived=publish_derived,
        fmt=fmt,
        level=level,
        tag_outputs=tag_outputs,
        force=force,
        dry_run=dry_run,
        compile_bytecode=compile_bytecode,
    )
    with RichReporter(bytes_mode=True) as reporter:
        outputs = publishing.publish_stack(stack, options, reporter)
    render_outputs(outputs, json_output)


@app.command("local-export")
def local_export(
    spec: SpecArg = DEFAULT_SPEC,
    build_dir: BuildDirOpt = None,
    output_dir: OutputDirOpt = None,
    include: IncludeOpt = None,
    allow_missing: AllowMissingOpt = False,
    export_derived: Annotated[
        bool, typer.Option("--export-derived", help="With --include: the layers above too.")
    ] = False,
    force: ForceOpt = False,
    dry_run: DryRunOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Export built layers as ready-to-run directories (postinstall already run).

    The export directory holds each layer under its deployed name plus the same
    `__venvstacks__` metadata as a publish (without archive fields).
    """
    stack = spec_api.StackSpec.load(Path(spec))
    options = publishing.ExportOptions(
        build_dir=_absolute(build_dir),
        output_dir=_absolute(output_dir),
        include=tuple(include or ()),
        allow_missing=allow_missing,
        export_derived=export_derived,
        force=force,
        dry_run=dry_run,
    )
    with RichReporter() as reporter:
        outputs = publishing.export_stack(stack, options, reporter)
    render_outputs(outputs, json_output)


def outputs_json(outputs: list[publishing.LayerOutput]) -> list[dict[str, object]]:
    """`publish --json` and the `published` part of `build --publish --json`."""
    return [
        {
            "layer": o.build_name,
            "install_target": o.deploy_name,
            "action": o.action,
            "path": str(o.path),
            "seconds": round(o.seconds, 3),
            "metadata": o.metadata,
        }
        for o in outputs
    ]


def render_outputs(outputs: list[publishing.LayerOutput], json_output: bool) -> None:
    if json_output:
        print_json(outputs_json(outputs))
        return
    if OUT.quiet:
        return
    table = Table(show_edge=False, header_style="bold")
    archives = any("archive_size" in o.metadata for o in outputs)  # not for exports
    columns = ("layer", "result", "size", "build", "time", "output")
    for column in columns if archives else ("layer", "result", "time", "output"):
        table.add_column(column)
    for o in outputs:
        size = o.metadata.get("archive_size")
        took = f"{o.seconds:.1f}s" if o.seconds else ""
        if archives:
            shown = human_size(size) if isinstance(size, int) else ""
            build = str(o.metadata.get("archive_build", ""))
            table.add_row(str(o.deploy_name), o.action, shown, build, took, str(o.path))
        else:
            table.add_row(str(o.deploy_name), o.action, took, str(o.path))
    OUT.stdout.print(table)
