"""`venvlayers publish` and `venvlayers local-export`."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .. import publishing, signing, spec as spec_api
from .._util.fs import human_size
from ..archives.common import DEFAULT_FORMAT
from ..bytecode import SHIPPED_SHARE
from .common import OUT, RichReporter, app, print_json, say
from .options import (
    DEFAULT_SPEC,
    AllowMissingOpt,
    BuildDirOpt,
    BytecodeOpt,
    BytecodeShareOpt,
    DryRunOpt,
    ForceOpt,
    FormatOpt,
    IncludeOpt,
    JsonOpt,
    LevelOpt,
    NoCompileOpt,
    OutputDirOpt,
    PublishDependenciesOpt,
    PublishDerivedOpt,
    SignKeyOpt,
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
    bytecode_share: BytecodeShareOpt = SHIPPED_SHARE,
    sign_key: SignKeyOpt = None,
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
        bytecode_share=bytecode_share,
        sign_key=load_sign_key(sign_key),
    )
    with RichReporter(bytes_mode=True) as reporter:
        outputs = publishing.publish_stack(stack, options, reporter)
    render_outputs(outputs, json_output)


@app.command("sign")
def sign_command(
    output_dir: Annotated[
        Path,
        typer.Argument(
            metavar="OUTPUT_DIR",
            file_okay=False,
            help="A published output directory (the one holding __venvstacks__/).",
        ),
    ],
    key: Annotated[
        Path,
        typer.Option(
            "--key",
            metavar="KEY",
            dir_okay=False,
            help="The OpenSSH private key to sign with (ed25519, ecdsa or rsa).",
        ),
    ],
    json_output: JsonOpt = False,
) -> None:
    """Sign an existing publish: write `__venvstacks__/venvstacks.json.sig`.

    The signing key can live on another machine than the build: copy the output
    directory there (or just its `__venvstacks__/venvstacks.json`), sign, and copy the
    `.sig` file back. Targets check it with `deploy --trusted-keys`.
    """
    loaded = load_sign_key(key)
    assert loaded is not None
    signed = publishing.sign_stack(output_dir.absolute(), loaded)
    if json_output:
        print_json(
            {
                "signature": str(signed.signature),
                "key_type": signed.key_type,
                "fingerprint": signed.fingerprint,
                "allowed_signers_line": signed.allowed_signers_line,
            }
        )
        return
    say(f"signed {signed.signature} ({signed.key_type} {signed.fingerprint})")
    say(f"trust it on targets with this allowed_signers line: {signed.allowed_signers_line}")


def load_sign_key(path: Path | None) -> signing.SigningKey | None:
    """The signing key at `path`, asking for its passphrase when one is needed.

    The passphrase comes from $VENVLAYERS_SIGN_PASSPHRASE, else from a prompt when
    stdin is a terminal; loaded before any work starts, so a wrong one fails at once.
    """
    if path is None:
        return None
    passphrase = os.environ.get(PASSPHRASE_ENV)
    try:
        return signing.load_signing_key(path, passphrase)
    except signing.SignatureError as exc:
        if exc.problem != signing.SignatureProblem.PASSPHRASE_REQUIRED or not sys.stdin.isatty():
            raise
    return signing.load_signing_key(path, getpass.getpass(f"passphrase for {path}: "))


PASSPHRASE_ENV = "VENVLAYERS_SIGN_PASSPHRASE"


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
    no_compile: NoCompileOpt = False,
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
        compile_bytecode=not no_compile,
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
