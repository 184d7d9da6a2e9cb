"""`venvlayers publish` and `venvlayers local-export`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from .._util.fs import human_size
from ..archives.common import DEFAULT_FORMAT, ArchiveFormat
from .common import (
    DEFAULT_SPEC,
    OUT,
    AllowMissingOpt,
    BuildDirOpt,
    IncludeOpt,
    JsonOpt,
    RichReporter,
    SpecArg,
    app,
    print_json,
)

if TYPE_CHECKING:  # the API is imported when a command runs: --help stays fast
    from ..publishing.publish import LayerOutput

OutputDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--output-dir",
        "-o",
        metavar="DIR",
        help="Output directory (default: _artifacts or _export beside the spec).",
    ),
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Only print what would be written.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Redo unchanged layers too.")]
FormatOpt = Annotated[
    ArchiveFormat,
    typer.Option("--format", help="Archive format (tar.zst is fastest; tar.xz as venvstacks)."),
]
LevelOpt = Annotated[
    int | None,
    typer.Option("--level", metavar="N", help="Compression level (default: per format)."),
]
TagOpt = Annotated[
    bool,
    typer.Option(
        "--tag-outputs",
        help="Name archives `<layer>-<platform>-<build>.<ext>` instead of `<layer>.<ext>`.",
    ),
]
BytecodeOpt = Annotated[
    bool,
    typer.Option(
        "--compile-bytecode",
        help="Ship checked-hash .pyc files in the archives: a faster deploy (nothing left "
        "to compile) for about 1.4x larger archives.",
    ),
]


PublishDependenciesOpt = Annotated[
    bool, typer.Option("--publish-dependencies", help="With --include: the layers below too.")
]
PublishDerivedOpt = Annotated[
    bool, typer.Option("--publish-derived", help="With --include: the layers above too.")
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
    from ..publishing.publish import PublishOptions, publish_stack
    from ..spec.stack import StackSpec

    stack = StackSpec.load(Path(spec))
    options = PublishOptions(
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
        outputs = publish_stack(stack, options, reporter)
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
    no_compile: Annotated[
        bool,
        typer.Option(
            "--no-compile",
            help="Do not compile bytecode: a faster export, but each app's first start "
            "compiles what it imports (every start, where bytecode cannot be written).",
        ),
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Export built layers as ready-to-run directories (postinstall already run).

    The export directory holds each layer under its deployed name plus the same
    `__venvstacks__` metadata as a publish (without archive fields).
    """
    from ..publishing.publish import ExportOptions, export_stack
    from ..spec.stack import StackSpec

    stack = StackSpec.load(Path(spec))
    options = ExportOptions(
        build_dir=_absolute(build_dir),
        output_dir=_absolute(output_dir),
        include=tuple(include or ()),
        allow_missing=allow_missing,
        export_derived=export_derived,
        force=force,
        dry_run=dry_run,
        compile_bytecode=not no_compile,
    )
    with RichReporter() as reporter:
        outputs = export_stack(stack, options, reporter)
    render_outputs(outputs, json_output)


def render_outputs(outputs: list[LayerOutput], json_output: bool) -> None:
    if json_output:
        print_json(
            [
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
        )
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
