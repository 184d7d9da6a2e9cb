"""`venvlayers deploy`, `run`, `status` and `remove`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .. import deploying
from .._util.fs import human_size
from .common import OUT, RichReporter, app, print_json, say
from .options import InsecureOpt, JsonOpt, NoCompileOpt, TrustedKeysOpt

__all__ = [
    "OptionalTargetOpt",
    "TargetOpt",
    "deploy_command",
    "remove_command",
    "run_command",
    "status_command",
]

TargetOpt = Annotated[
    Path,
    typer.Option("--target", "-t", help="The deployment directory.", file_okay=False),
]
OptionalTargetOpt = Annotated[
    Path | None,
    typer.Option(
        "--target",
        "-t",
        help="The deployment, export or build directory (default: the current directory).",
        file_okay=False,
    ),
]


@app.command("deploy")
def deploy_command(
    source: Annotated[
        str,
        typer.Argument(
            help="A published output directory (the one holding __venvstacks__/), its "
            "file:// or https:// URL, an OCI registry reference (oci://HOST/REPO:TAG or "
            "@sha256:DIGEST) or an OCI image layout (oci-layout:DIR)."
        ),
    ],
    target: TargetOpt,
    apps: Annotated[
        list[str] | None,
        typer.Option(
            "--app",
            help="Deploy this app (short name, build name or install target) and the layers "
            "it needs (repeatable; default: every layer).",
        ),
    ] = None,
    platform: Annotated[
        str | None,
        typer.Option("--platform", help="Deploy layers for this platform (default: this one)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Reinstall layers that are already deployed.")
    ] = False,
    no_compile: NoCompileOpt = False,
    trusted_keys: TrustedKeysOpt = None,
    insecure: InsecureOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Deploy a published stack: verify, unpack, compile, run postinstall, move into place.

    Layers already deployed from the same archive are left alone; layers no deployed
    app needs any more are removed. An interrupted deploy leaves the previous one
    working and is finished or cleaned up by the next.
    """
    with RichReporter(bytes_mode=True, transient=True) as reporter:
        result = deploying.deploy(
            source,
            target,
            apps=tuple(apps or ()),
            platform=platform,
            force=force,
            compile_bytecode=not no_compile,
            trusted_keys=trusted_keys,
            insecure=insecure,
            reporter=reporter,
        )
    _render_deploy(result, json_output)


def _render_deploy(result: deploying.DeployResult, json_output: bool) -> None:
    if json_output:
        print_json(
            {
                "target": str(result.target),
                "platform": str(result.platform),
                "source": result.source,
                "seconds": result.seconds,
                "layers": [
                    {
                        "install_target": layer.install_target,
                        "layer_name": layer.layer_name,
                        "category": layer.category.value,
                        "action": layer.action,
                        "archive_name": layer.archive_name,
                        "archive_size": layer.archive_size,
                        "installed_size": layer.installed_size,
                        "seconds": layer.seconds,
                        "compiled": layer.compiled,
                        "not_compiled": list(layer.not_compiled),
                    }
                    for layer in result.layers
                ],
                "removed": list(result.removed),
                "signed_by": result.signed_by.to_dict() if result.signed_by else None,
                "fetched_bytes": result.fetched,
            }
        )
        return
    if OUT.quiet:
        return
    if result.signed_by is not None:
        say(f"signature ok: signed by {result.signed_by.describe()}")
    table = Table(show_edge=False, header_style="bold")
    # a layer's time runs from the start of extraction until it is unpacked and its
    # postinstall done, waiting for lower layers included (as `build` shows it)
    for column in ("layer", "result", "archive", "installed", "ready after"):
        table.add_column(column)
    for layer in result.layers:
        table.add_row(
            layer.install_target,
            layer.action,
            human_size(layer.archive_size),
            human_size(layer.installed_size) if layer.installed_size else "",
            f"{layer.seconds:.2f}s" if layer.seconds else "",
        )
    OUT.stdout.print(table)
    for name in result.removed:
        say(f"removed {name} (no deployed app needs it)")
    changed, total = len(result.changed), len(result.layers)
    fetched = f"; {human_size(result.fetched)} fetched" if result.fetched else ""
    say(f"{changed} of {total} layers changed in {result.target} ({result.seconds:.2f}s{fetched})")


@app.command(
    "run",
    context_settings={"ignore_unknown_options": True},
)
def run_command(
    app_name: Annotated[str, typer.Argument(metavar="APP", help="The app to run.")],
    args: Annotated[
        list[str] | None,
        typer.Argument(help="Arguments for the app (put them after `--`).", show_default=False),
    ] = None,
    target: OptionalTargetOpt = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="SOURCE",
            help="Deploy what the app needs from SOURCE first (any `deploy` source), into "
            "--target or a per-user directory for that source; only missing layers are "
            "fetched.",
        ),
    ] = None,
    trusted_keys: TrustedKeysOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Run a deployed (or exported, or built) app: `<layer>/bin/python -m <launch module>`.

    Arguments, stdin/stdout and the app's exit code pass straight through. Put the
    app's own arguments after `--` (`venvlayers run one --target DIR -- --verbose`).
    With `--from oci://registry/team/stack:1.0`, the app is deployed first (like
    `pipx run`): the first run fetches its layers, later runs only what changed.
    """
    if source is None:
        code = deploying.run_app(app_name, location=target, args=tuple(args or ()))
        raise typer.Exit(code)
    # the deploy's notes and progress go to stderr, and stop before the app starts:
    # a progress display still drawing would overwrite the app's own output
    with RichReporter(bytes_mode=True, transient=True) as reporter:
        where = deploying.deploy_for_run(
            source,
            app_name,
            target=target,
            trusted_keys=trusted_keys,
            insecure=insecure,
            reporter=reporter,
        )
    code = deploying.run_app(app_name, location=where, args=tuple(args or ()))
    raise typer.Exit(code)


@app.command("status")
def status_command(
    target: OptionalTargetOpt = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify", help="Re-hash every installed file against the deploy-time manifest."
        ),
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Show what is deployed, which apps can run, and (with --verify) what is damaged.

    Exits with 1 when a layer is missing or damaged.
    """
    result = deploying.status(target if target is not None else Path.cwd(), verify=verify)
    if json_output:
        print_json(_status_json(result))
    elif not OUT.quiet:
        _render_status(result)
    if result.damaged:
        bad = [layer.record.install_target for layer in result.layers if not layer.ok]
        OUT.stderr.print(f"error: damaged or missing layers: {', '.join(bad)}", markup=False)
        raise typer.Exit(1)


def _status_json(result: deploying.TargetStatus) -> dict[str, Any]:
    return {
        "target": str(result.target),
        "platform": result.platform,
        "source": result.source,
        "updated_at": result.updated_at,
        "verified": result.verified,
        "damaged": result.damaged,
        "unfinished": result.unfinished,
        "trusted_keys": result.trusted_keys.to_dict() if result.trusted_keys else None,
        "signed_by": result.signed_by.to_dict() if result.signed_by else None,
        "roots": dict(result.roots),
        "layers": [
            {
                "install_target": layer.record.install_target,
                **layer.record.to_dict(),
                "present": layer.present,
                "ok": layer.ok,
                "problems": list(layer.problems),
                "disk_size": layer.disk_size,
            }
            for layer in result.layers
        ],
        "apps": [
            {
                "name": a.name,
                "install_target": a.install_target,
                "launch_module": a.launch_module,
                "runnable": a.runnable,
                "missing": list(a.missing),
                "damaged": list(a.damaged),
            }
            for a in result.apps
        ],
    }


def _render_status(result: deploying.TargetStatus) -> None:
    OUT.stdout.print(
        f"{result.target}: {result.platform}, from {result.source}, updated {result.updated_at}"
    )
    if result.unfinished:
        OUT.stdout.print("an interrupted deploy will be finished by the next deploy")
    if result.signed_by is not None:
        OUT.stdout.print(f"signed by {result.signed_by.describe()}", markup=False)
    if result.trusted_keys is not None:
        OUT.stdout.print(
            f"deploys must be signed by a key in {result.trusted_keys.source}:", markup=False
        )
        for line in result.trusted_keys.describe():
            OUT.stdout.print(f"  {line}", markup=False)
    table = Table(show_edge=False, header_style="bold")
    for column in ("layer", "kind", "version", "archive sha256", "installed", "deployed", "state"):
        table.add_column(column)
    for layer in result.layers:
        record = layer.record
        if not layer.present:
            state = "missing"
        elif layer.problems:
            state = f"damaged ({len(layer.problems)})"
        else:
            state = "verified" if layer.verified else "ok"
        table.add_row(
            record.install_target,
            record.category.singular,
            str(record.lock_version),
            record.archive_sha256[:12],
            human_size(layer.disk_size if layer.disk_size is not None else record.installed_size),
            record.deployed_at,
            state,
        )
    OUT.stdout.print(table)
    for layer in result.layers:
        for problem in layer.problems[:10]:
            OUT.stdout.print(f"  {layer.record.install_target}: {problem}", markup=False)
        if len(layer.problems) > 10:
            OUT.stdout.print(
                f"  {layer.record.install_target}: ... {len(layer.problems) - 10} more"
            )
    for a in result.apps:
        if a.runnable:
            OUT.stdout.print(f"app {a.name} ({a.install_target}): runnable")
        else:
            why = [*(f"{n} missing" for n in a.missing), *(f"{n} damaged" for n in a.damaged)]
            OUT.stdout.print(f"app {a.name} ({a.install_target}): cannot run ({', '.join(why)})")


@app.command("remove")
def remove_command(
    app_name: Annotated[str, typer.Argument(metavar="APP", help="The app to remove.")],
    target: TargetOpt,
    json_output: JsonOpt = False,
) -> None:
    """Remove a deployed app and every layer nothing else needs."""
    with RichReporter(transient=True) as reporter:
        result = deploying.remove(target, app_name, reporter=reporter)
    if json_output:
        print_json(
            {"target": str(result.target), "root": result.root, "removed": list(result.removed)}
        )
        return
    for name in result.removed:
        say(f"removed {name}")
