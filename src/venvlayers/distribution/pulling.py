"""Pull a stack into a published directory (an air-gapped mirror `deploy` can read).

Everything goes to a sibling staging directory first, `.NAME.pull/`: blobs by digest
under `blobs/` (each verified while it streams; `.partial` files are resumed by the
next pull after an interruption), then the directory tree under `out/`, hard-linked from
them. Only then is `out/` renamed to NAME, the old NAME set aside and removed. A file
the old NAME already holds with the right digest is linked, not downloaded again, so
pulling an update fetches only the layers that changed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from .._util.fs import remove_tree, replace_dir, restore_aside, write_atomic
from ..errors import DistributionError
from ..progress import NULL_REPORTER, Reporter
from .artifact import METADATA_PATH, Blob, digest_of
from .parallel import each
from .reader import open_stack
from .reference import Reference
from .results import DEFAULT_OPTIONS, BlobTransfer, PullResult, ResolvedStack, TransferOptions

__all__ = ["pull"]


def pull(
    ref: str | Reference,
    output_dir: Path,
    *,
    platforms: Iterable[str] | None = None,
    options: TransferOptions = DEFAULT_OPTIONS,
    reporter: Reporter = NULL_REPORTER,
) -> PullResult:
    """Mirror the stack `ref` names into `output_dir` (all platforms, or those named).

    `output_dir` must be new, empty, or a published stack (which is replaced whole).
    """
    final = output_dir.absolute()
    staging = final.with_name(f".{final.name}.pull")
    aside = final.with_name(f".{final.name}.old")
    _restore_aside(final, aside)
    _check_output(final)
    with open_stack(ref, options) as reader:
        top, stacks = reader.resolve_all(platforms)
        files = _files(reader.where, stacks)
        blobs_dir = staging / "blobs"
        try:
            blobs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DistributionError(f"cannot create {blobs_dir}: {exc.strerror}") from None
        old = {name: final / name for name in files if (final / name).is_file()}
        distinct = list({b.digest: b for b in files.values()}.values())
        distinct.sort(key=lambda b: -b.size)

        # read while resolving (and verified): no need to fetch them again
        in_memory = {digest_of(s.metadata): s.metadata for s in stacks}
        in_memory.update({digest_of(s.signature): s.signature for s in stacks if s.signature})

        def get(blob: Blob) -> BlobTransfer:
            dest = blobs_dir / blob.hex
            if dest.exists() and _matches(dest, blob):
                return BlobTransfer(blob.name, blob.digest, blob.size, "reused")
            previous = old.get(blob.name)
            if previous is not None and _matches(previous, blob):
                _link(previous, dest)
                return BlobTransfer(blob.name, blob.digest, blob.size, "reused")
            if blob.digest in in_memory:
                write_atomic(dest, in_memory[blob.digest])
                return BlobTransfer(blob.name, blob.digest, blob.size, "downloaded", blob.size)
            done = reader.fetch(blob, dest, reporter)
            return BlobTransfer(blob.name, blob.digest, blob.size, done.action, done.bytes)

        transfers = each(get, distinct, options.parallel)
    out = staging / "out"
    try:
        if out.exists():
            remove_tree(out)
        for name, blob in sorted(files.items()):
            path = out / name
            path.parent.mkdir(parents=True, exist_ok=True)
            _link(blobs_dir / blob.hex, path)
        if METADATA_PATH not in files:  # a manifest from another tool may only have the config
            write_atomic(out / METADATA_PATH, stacks[0].metadata)
        replace_dir(out, final, aside)
        remove_tree(aside)
        remove_tree(staging)
    except OSError as exc:
        raise DistributionError(f"cannot write {final}: {exc.strerror or exc}") from None
    return PullResult(
        reference=str(reader.where),
        digest=top,
        output_dir=final,
        platforms=tuple(s.platform for s in stacks),
        blobs=tuple(transfers),
    )


def _files(where: str, stacks: list[ResolvedStack]) -> dict[str, Blob]:
    """Every file of the selected platforms by its path; one venvstacks.json for all."""
    metadata = {s.metadata for s in stacks}
    if len(metadata) > 1:
        names = ", ".join(s.platform for s in stacks)
        raise DistributionError(
            f"{where} was pushed from several output directories (its platforms {names} "
            "have different venvstacks.json); pull one platform at a time"
        )
    files: dict[str, Blob] = {}
    for stack in stacks:
        for blob in stack.files:
            known = files.setdefault(blob.name, blob)
            if known.digest != blob.digest:
                raise DistributionError(
                    f"{where}: two platforms hold different files named {blob.name!r}"
                )
    return files


def _check_output(final: Path) -> None:
    if not final.exists():
        return
    if not final.is_dir():
        raise DistributionError(f"{final} exists and is not a directory")
    if (final / METADATA_PATH).is_file() or not any(final.iterdir()):
        return
    raise DistributionError(
        f"{final} is neither empty nor a published stack; pull into a new directory"
    )


def _matches(path: Path, blob: Blob) -> bool:
    try:
        if path.stat().st_size != blob.size:
            return False
        with path.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest() == blob.hex
    except OSError:
        return False


def _link(source: Path, dest: Path) -> None:
    dest.unlink(missing_ok=True)
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


def _restore_aside(final: Path, aside: Path) -> None:
    """Undo a replacement cut short; an old copy whose replacement landed is deleted."""
    restore_aside(final, aside)
    if os.path.lexists(aside):
        remove_tree(aside)
