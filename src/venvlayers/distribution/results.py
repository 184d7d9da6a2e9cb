"""What push, pull and fetch did, as values the CLI renders and tests count."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .artifact import Blob, PublishedLayer
from .auth import Credentials

__all__ = [
    "BlobTransfer",
    "Fetched",
    "PullResult",
    "PushResult",
    "ResolvedStack",
    "TransferOptions",
]


@dataclass(frozen=True)
class TransferOptions:
    """Network settings shared by push, pull and fetch."""

    insecure: bool = False
    """Allow plain http to hosts that are not loopback addresses."""
    timeout: float | None = None
    """Seconds a stalled connection or read may take; None: `$VENVLAYERS_DOWNLOAD_TIMEOUT`
    or 60."""
    retries: int = 4
    backoff: float = 0.5
    max_chunk: int | None = None
    """Upload blobs larger than this in chunks of at most this many bytes (registries
    that cap request bodies); None: one request per blob."""
    parallel: int = 4
    """Blobs moved at the same time."""
    credentials: Credentials | None = None
    """Instead of looking in docker/podman auth files."""


DEFAULT_OPTIONS = TransferOptions()


@dataclass(frozen=True)
class BlobTransfer:
    """One blob of a push or pull and what happened to it."""

    name: str
    digest: str
    size: int
    action: str
    """push: `sent`, `skipped` (already there), `mounted`, `linked`, `copied`;
    pull: `downloaded`, `resumed`, `reused` (already in the output), `linked`, `copied`."""
    bytes: int = 0
    """Bytes that went over the network (or were copied) for it."""


@dataclass(frozen=True)
class PushResult:
    reference: str
    digest: str
    """The index digest: `REF@DIGEST` names exactly this stack."""
    manifests: Mapping[str, str]
    """Target platform -> manifest digest."""
    blobs: tuple[BlobTransfer, ...]
    unchanged: bool = False
    """The tag already named this stack: nothing was sent."""
    previous: str | None = None
    """What the tag named before, when it moved (`force`)."""

    def count(self, action: str) -> int:
        return sum(1 for b in self.blobs if b.action == action)

    @property
    def bytes_sent(self) -> int:
        return sum(b.bytes for b in self.blobs)


@dataclass(frozen=True)
class PullResult:
    reference: str
    digest: str
    output_dir: Path
    platforms: tuple[str, ...]
    blobs: tuple[BlobTransfer, ...]

    def count(self, action: str) -> int:
        return sum(1 for b in self.blobs if b.action == action)

    @property
    def bytes_received(self) -> int:
        return sum(b.bytes for b in self.blobs)

    @property
    def unchanged(self) -> bool:
        """The output directory already held exactly this stack."""
        return all(b.action == "reused" for b in self.blobs)


@dataclass(frozen=True)
class ResolvedStack:
    """A reference resolved once, for one platform: what a deploy needs to fetch."""

    reference: str
    digest: str
    """What the reference named (the index, or a manifest); fetching by it is stable."""
    manifest_digest: str
    platform: str
    metadata: bytes
    """The exact bytes of `venvstacks.json` (verified against the config digest)."""
    signature: bytes | None
    """`venvstacks.json.sig`, if the stack was pushed with one."""
    layers: tuple[PublishedLayer, ...]
    """The metadata's layers for `platform`, each checked to be in the manifest."""
    files: tuple[Blob, ...] = field(repr=False)
    """Every file of the manifest: archives, then metadata files."""

    def layer_blob(self, layer: PublishedLayer) -> Blob:
        """The blob of `layer`'s archive (name, digest and size agree with the metadata)."""
        for blob in self.files:
            if blob.name == layer.archive_name:
                return blob
        raise KeyError(layer.archive_name)


@dataclass(frozen=True)
class Fetched:
    blob: Blob
    path: Path
    action: str
    """`downloaded`, `resumed`, `linked` or `copied`."""
    bytes: int
