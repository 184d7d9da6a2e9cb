"""Push published directories to a registry or into an OCI image layout.

Order matters for crash safety and for registries, which check that what a manifest
names exists: blobs first (skipping those already there: HEAD, or a size check in a
layout), then the platform manifests by digest, then the index under the tag. A push
killed at any point leaves the tag as it was; the next push sends only what is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import DistributionError
from ..progress import NULL_REPORTER, Reporter
from .artifact import INDEX_TYPE, MANIFEST_TYPE, Artifact, Blob, build_artifact
from .layout import LocalLayout
from .parallel import each
from .reader import as_reference, make_http
from .reference import DEFAULT_TAG, LayoutReference, Reference, RegistryReference
from .registry import RegistryClient
from .results import DEFAULT_OPTIONS, BlobTransfer, PushResult, TransferOptions

__all__ = ["push"]


def push(
    output_dirs: Path | Sequence[Path],
    ref: str | Reference,
    *,
    force: bool = False,
    mount_from: str | None = None,
    options: TransferOptions = DEFAULT_OPTIONS,
    reporter: Reporter = NULL_REPORTER,
) -> PushResult:
    """Push the stack in `output_dirs` (one per platform, or one for all) to `ref`.

    The same stack always gets the same digest. If the tag already names it, nothing
    is sent (`unchanged`); if it names something else, `force` is needed to move it.
    `mount_from` (a repository of the same registry) is asked for missing blobs first.
    """
    dirs = [output_dirs] if isinstance(output_dirs, Path) else list(output_dirs)
    artifact = build_artifact(dirs)
    target = as_reference(ref)
    if isinstance(target, RegistryReference) and target.digest not in (None, artifact.digest):
        raise DistributionError(
            f"the stack's digest is {artifact.digest}, not the {target.digest} that "
            f"{target} names; push to a tag instead"
        )
    if isinstance(target, LayoutReference):
        if mount_from:
            raise DistributionError("--mount-from works with registries, not with OCI layouts")
        return _push_layout(artifact, target, force, options, reporter)
    return _push_registry(artifact, target, force, mount_from, options, reporter)


def _check_tag(where: str, previous: str | None, artifact: Artifact, force: bool) -> bool:
    """True when the tag already names this stack; raise when moving it needs `force`."""
    if previous == artifact.digest:
        return True
    if previous is not None and not force:
        raise DistributionError(
            f"{where} already names another stack ({previous}); pass --force to move the tag "
            f"to this one ({artifact.digest})"
        )
    return False


def _push_registry(
    artifact: Artifact,
    target: RegistryReference,
    force: bool,
    mount_from: str | None,
    options: TransferOptions,
    reporter: Reporter,
) -> PushResult:
    tag = target.tag or (None if target.digest else DEFAULT_TAG)
    manifests = {m.platform: m.digest for m in artifact.manifests}
    with make_http(options) as http:
        client = RegistryClient(
            target,
            http,
            push=True,
            mount_from=mount_from,
            credentials=options.credentials,
            max_chunk=options.max_chunk,
        )
        previous = client.manifest_digest(tag or artifact.digest)
        if _check_tag(str(target), previous, artifact, force):
            return PushResult(str(target), artifact.digest, manifests, (), unchanged=True)

        def send(blob: Blob) -> BlobTransfer:
            return _send_blob(client, blob, mount_from, reporter)

        blobs = each(send, artifact.blobs(), options.parallel)
        for manifest in artifact.manifests:
            client.put_manifest(manifest.digest, MANIFEST_TYPE, manifest.body)
        client.put_manifest(tag or artifact.digest, INDEX_TYPE, artifact.index)
    return PushResult(str(target), artifact.digest, manifests, tuple(blobs), previous=previous)


def _send_blob(
    client: RegistryClient, blob: Blob, mount_from: str | None, reporter: Reporter
) -> BlobTransfer:
    key = f"upload:{blob.name}"
    if client.has_blob(blob):
        reporter.begin(key, f"upload {blob.name}", total=blob.size)
        reporter.end(key, "skipped")
        return BlobTransfer(blob.name, blob.digest, blob.size, "skipped")
    location = None
    if mount_from:
        location = client.mount_blob(blob, mount_from)
        if location is None:
            reporter.begin(key, f"upload {blob.name}", total=blob.size)
            reporter.end(key, "mounted")
            return BlobTransfer(blob.name, blob.digest, blob.size, "mounted")
    assert blob.source is not None
    reporter.begin(key, f"upload {blob.name}", total=blob.size)
    status = "failed"
    try:
        outcome = client.upload_blob(
            blob, blob.source, location=location, progress=lambda n: reporter.advance(key, n)
        )
        status = "done"
    finally:
        reporter.end(key, status)
    return BlobTransfer(blob.name, blob.digest, blob.size, outcome.action, outcome.bytes_sent)


def _push_layout(
    artifact: Artifact,
    target: LayoutReference,
    force: bool,
    options: TransferOptions,
    reporter: Reporter,
) -> PushResult:
    if target.path is None:
        raise DistributionError(
            f"cannot push to {target}: an OCI layout behind a URL is read-only; "
            "write it to a directory and upload that"
        )
    tag = target.tag or DEFAULT_TAG
    layout = LocalLayout(target.path, tag)
    manifests = {m.platform: m.digest for m in artifact.manifests}
    layout.prepare()
    previous = layout.current(tag)
    if _check_tag(str(target), previous, artifact, force):
        return PushResult(str(target), artifact.digest, manifests, (), unchanged=True)

    def store(blob: Blob) -> BlobTransfer:
        if layout.has_blob(blob):
            return BlobTransfer(blob.name, blob.digest, blob.size, "skipped")
        assert blob.source is not None
        action, copied = layout.put_blob(blob, blob.source, reporter)
        return BlobTransfer(blob.name, blob.digest, blob.size, action, copied)

    blobs = each(store, artifact.blobs(), options.parallel)
    for manifest in artifact.manifests:
        layout.put_bytes(manifest.body)
    layout.put_bytes(artifact.index)
    layout.set_tag(tag, artifact.index)
    return PushResult(str(target), artifact.digest, manifests, tuple(blobs), previous=previous)
