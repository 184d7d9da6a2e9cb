"""`venvlayers runtime ...`: fetch, import, list and prune cached runtimes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .. import runtimes
from .._util.fs import human_size
from ..errors import RuntimeSourceError
from ..platforms import TargetPlatform, build_platform, suggest_platform
from .common import OUT, RichReporter, app, print_json, say
from .options import JsonOpt

__all__ = [
    "fetch",
    "import_",
    "list_",
    "prune",
    "runtime_app",
]

runtime_app = typer.Typer(
    name="runtime",
    help="Obtain, import, list and prune the runtimes in the cache.",
    no_args_is_help=True,
)
app.add_typer(runtime_app, name="runtime")


def _describe(runtime: runtimes.RuntimeArchive) -> str:
    return (
        f"{runtime.name} ({runtime.platform}, {runtime.source}) sha256 {runtime.sha256} "
        f"{human_size(runtime.size)}\n  {runtime.path}"
    )


@runtime_app.command("fetch")
def fetch(
    name: Annotated[str, typer.Argument(help="The runtime, e.g. cpython@3.12.7.")],
    platform: Annotated[
        str | None,
        typer.Option("--platform", help="Target platform (default: this machine's)."),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Put a runtime into the cache: from the cache, $VENVLAYERS_RUNTIME_MIRROR or a download."""
    try:
        implementation, version = runtimes.parse_runtime_name(name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="NAME") from None
    try:
        target = TargetPlatform(platform) if platform else build_platform()
    except ValueError:
        guess = suggest_platform(platform or "")
        hint = f"did you mean {guess}? " if guess else ""
        choices = ", ".join(TargetPlatform.all())
        raise typer.BadParameter(
            f"unknown platform {platform!r}; {hint}choose one of {choices}",
            param_hint="--platform",
        ) from None
    with RichReporter(bytes_mode=True, transient=True) as reporter:
        runtime = runtimes.obtain_runtime(implementation, version, target, reporter=reporter)
    if json_output:
        print_json(runtimes.runtime_to_dict(runtime))
    else:
        say(_describe(runtime))


@runtime_app.command("import")
def import_(
    prefix: Annotated[
        Path, typer.Argument(help="A CPython install prefix, e.g. ~/.pyenv/versions/3.11.7.")
    ],
    name: Annotated[
        str | None,
        typer.Option("--name", help="Expected runtime name, e.g. cpython@3.11.7 (checked)."),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Pack a local CPython install into a relocatable runtime archive in the cache.

    Afterwards `cpython@X.Y.Z` resolves to it offline. Linux only for now.
    """
    with RichReporter(transient=True) as reporter:
        runtime = runtimes.import_runtime(prefix, name=name, reporter=reporter)
    if json_output:
        print_json(runtimes.runtime_to_dict(runtime))
    else:
        say(f"imported {_describe(runtime)}")


@runtime_app.command("list")
def list_(json_output: JsonOpt = False) -> None:
    """Show the cached runtimes: name, platform, source, sha256 and size."""
    cached = runtimes.list_runtimes()
    if json_output:
        print_json([_cached_dict(c) for c in cached])
        return
    if not cached:
        say(f"no runtimes cached in {runtimes.runtimes_dir()}")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("runtime", "platform", "source", "sha256", "size"):
        table.add_column(column, justify="right" if column == "size" else "left", no_wrap=True)
    table.add_column("origin", overflow="fold")
    for c in cached:
        r = c.runtime
        table.add_row(
            r.name,
            str(r.platform),
            r.source,
            r.sha256[:12],
            human_size(r.size),
            r.origin,
        )
    OUT.stdout.print(table)


def _cached_dict(c: runtimes.CachedRuntime) -> dict[str, object]:
    return {**runtimes.runtime_to_dict(c.runtime), "created": c.created, "notes": list(c.notes)}


@runtime_app.command("prune")
def prune(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only show what would be removed.")
    ] = False,
    keep: Annotated[
        list[str] | None,
        typer.Option(
            "--keep", metavar="SHA|NAME", help="A sha256 or name (cpython@3.11.7) to keep."
        ),
    ] = None,
    everything: Annotated[
        bool, typer.Option("--all", help="Remove every runtime not named by --keep.")
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Remove runtimes nothing resolves to any more.

    Kept: the newest runtime of each name and platform (the one `fetch` and builds
    resolve to) and anything named by --keep. Removed: older duplicates, broken
    entries and leftovers of interrupted downloads or imports (older than an hour).
    """
    for item in keep or ():
        try:
            runtimes.parse_runtime_name(item)
        except ValueError:
            if len(item.removeprefix("sha256:")) != 64:
                raise RuntimeSourceError(
                    f"--keep {item!r}: give a runtime name (cpython@3.11.7) or a full sha256"
                ) from None
    result = runtimes.prune_runtimes(keep or (), everything=everything, dry_run=dry_run)
    if json_output:
        print_json(
            {
                "dry_run": dry_run,
                "removed": [_cached_dict(c) for c in result.removed],
                "kept": [_cached_dict(c) for c in result.kept],
                "leftovers": [str(p) for p in result.leftovers],
                "freed_bytes": result.freed_bytes,
            }
        )
        return
    verb = "would remove" if dry_run else "removed"
    for c in result.removed:
        say(f"{verb} {c.runtime.name} ({c.runtime.platform}, {c.runtime.sha256[:12]})")
    for path in result.leftovers:
        say(f"{verb} leftover {path}")
    say(
        f"{verb} {len(result.removed)} runtime(s) and {len(result.leftovers)} leftover(s), "
        f"{human_size(result.freed_bytes)}; kept {len(result.kept)}"
    )
