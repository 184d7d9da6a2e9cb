"""`venvlayers push` and `venvlayers pull`: published stacks to and from OCI registries."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from .. import distribution
from .._util.fs import human_size
from .common import OUT, RichReporter, app, print_json, say
from .options import InsecureOpt, JsonOpt

__all__ = ["pull_command", "push_command"]

R = TypeVar("R")

_UNITS = {
    "": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_size(text: str) -> int:
    """`8388608`, `8MiB`, `10M`, `512 KiB`: a byte count as people write one."""
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    unit = match and _UNITS.get(match.group(2).lower())
    if not match or unit is None or int(match.group(1)) == 0:
        raise typer.BadParameter(f"{text!r} is not a size: give bytes, or e.g. 8MiB, 10M, 512KiB")
    return int(match.group(1)) * unit


MaxChunkOpt = Annotated[
    int | None,
    typer.Option(
        "--max-chunk",
        metavar="SIZE",
        parser=parse_size,
        help="Upload blobs in chunks of at most this size (bytes, or e.g. 8MiB, 10M), for "
        "registries or proxies that cap request bodies.",
    ),
]


@app.command("push")
def push_command(
    items: Annotated[
        list[str],
        typer.Argument(
            metavar="OUTPUT_DIR [OUTPUT_DIR...] REFERENCE",
            help="One or more published output directories (one per platform), then "
            "`oci://HOST[:PORT]/REPO[:TAG]` or `oci-layout:DIR[:TAG]`.",
        ),
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Move the tag even if it names another stack.")
    ] = False,
    mount_from: Annotated[
        str | None,
        typer.Option(
            "--mount-from",
            metavar="REPO",
            help="Ask the registry to mount missing blobs from this repository of its own.",
        ),
    ] = None,
    max_chunk: MaxChunkOpt = None,
    insecure: InsecureOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Push a published stack to an OCI registry, or write it as an OCI image layout.

    Each layer archive becomes one blob whose digest is the sha256 the metadata records;
    `venvstacks.json` is the config, with one manifest per platform and an index over
    them. Blobs the registry already holds are not sent again; pushing the same stack
    twice gives the same digest.
    """
    if len(items) < 2:
        raise typer.BadParameter("give at least one OUTPUT_DIR and then the REFERENCE")
    *dirs, ref = items
    options = distribution.TransferOptions(insecure=insecure, max_chunk=max_chunk)
    result, seconds = _timed(
        lambda reporter: distribution.push(
            [Path(d).absolute() for d in dirs],
            ref,
            force=force,
            mount_from=mount_from,
            options=options,
            reporter=reporter,
        )
    )
    if json_output:
        print_json(
            _result_json(
                result,
                manifests=dict(result.manifests),
                unchanged=result.unchanged,
                previous=result.previous,
                bytes_sent=result.bytes_sent,
                seconds=seconds,
            )
        )
        return
    if result.unchanged:
        say(f"{result.reference} already names this stack ({result.digest}): nothing sent")
        return
    _render_blobs(result.blobs)
    counts = ", ".join(
        f"{result.count(a)} {a}"
        for a in ("sent", "skipped", "mounted", "linked", "copied")
        if result.count(a)
    )
    moved = "copied" if _on_disk(result.reference) else "uploaded"
    say(
        f"pushed {result.reference}@{result.digest} "
        f"({counts}; {human_size(result.bytes_sent)} {moved} in {seconds:.2f}s)"
    )
    if result.previous:
        say(f"the tag moved from {result.previous}")


@app.command("pull")
def pull_command(
    reference: Annotated[
        str,
        typer.Argument(
            metavar="REFERENCE", help="`oci://HOST[:PORT]/REPO[:TAG|@DIGEST]` or `oci-layout:DIR`."
        ),
    ],
    output_dir: Annotated[
        Path,
        typer.Argument(
            metavar="OUTPUT_DIR", file_okay=False, help="Where to write the published stack."
        ),
    ],
    platforms: Annotated[
        list[str] | None,
        typer.Option(
            "--platform", metavar="PLATFORM", help="Only this platform's layers (repeatable)."
        ),
    ] = None,
    insecure: InsecureOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Mirror a stack from a registry into a published directory (for air-gapped copies).

    The result is what `venvlayers publish` writes, ready for `deploy` or another push;
    every blob is verified, an interrupted pull resumes, and files the directory already
    holds are reused.
    """
    options = distribution.TransferOptions(insecure=insecure)
    result, seconds = _timed(
        lambda reporter: distribution.pull(
            reference,
            output_dir.absolute(),
            platforms=platforms or None,
            options=options,
            reporter=reporter,
        )
    )
    if json_output:
        print_json(
            _result_json(
                result,
                output_dir=str(result.output_dir),
                platforms=list(result.platforms),
                unchanged=result.unchanged,
                bytes_received=result.bytes_received,
                seconds=seconds,
            )
        )
        return
    _render_blobs(result.blobs)
    if result.unchanged:
        say(f"{result.output_dir} already holds {result.reference} ({result.digest})")
        return
    moved = "copied" if _on_disk(result.reference) else "downloaded"
    say(
        f"pulled {result.reference}@{result.digest} into {result.output_dir} "
        f"({', '.join(result.platforms)}; {human_size(result.bytes_received)} {moved} "
        f"in {seconds:.2f}s)"
    )


def _timed(transfer: Callable[[RichReporter], R]) -> tuple[R, float]:
    """Run a push or pull under a transient byte-progress display: (result, seconds)."""
    started = time.monotonic()
    with RichReporter(bytes_mode=True, transient=True) as reporter:
        result = transfer(reporter)
    return result, round(time.monotonic() - started, 3)


def _result_json(
    result: distribution.PushResult | distribution.PullResult, **fields: object
) -> dict[str, object]:
    """The `--json` of push and pull: the same keys for what they share."""
    blobs = [
        {"name": b.name, "digest": b.digest, "size": b.size, "action": b.action, "bytes": b.bytes}
        for b in result.blobs
    ]
    return {"reference": result.reference, "digest": result.digest, **fields, "blobs": blobs}


def _on_disk(reference: str) -> bool:
    """Whether `reference` is an OCI layout in a directory (bytes copied, not sent)."""
    ref = distribution.parse_reference(reference)
    return isinstance(ref, distribution.LayoutReference) and ref.path is not None


def _render_blobs(blobs: tuple[distribution.BlobTransfer, ...]) -> None:
    if OUT.quiet or (OUT.verbosity < 1 and len(blobs) > 20):
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("file", "size", "result", "digest"):
        table.add_column(column)
    for blob in blobs:
        table.add_row(blob.name, human_size(blob.size), blob.action, blob.digest[7:19])
    OUT.stdout.print(table)
