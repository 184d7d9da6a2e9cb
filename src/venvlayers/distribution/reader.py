"""Reading a stack from a registry or a layout: resolve once, then fetch blobs by digest.

`StackReader.resolve(platform)` reads the reference's index (or manifest), the
platform's manifest and the metadata it names, checks every digest and that the
manifest holds exactly the archives `venvstacks.json` lists, and returns a
`ResolvedStack`. Blobs are then fetched by digest, so a tag moved meanwhile changes
nothing about a deploy in progress.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .._util.http import HttpClient
from ..errors import DistributionError
from ..platforms import build_platform
from ..progress import NULL_REPORTER, Reporter
from .artifact import (
    INDEX_TYPE,
    MAX_METADATA,
    SIGNATURE_PATH,
    SIGNATURE_TYPE,
    Blob,
    IndexEntry,
    PlatformManifest,
    check_against_metadata,
    check_names,
    digest_of,
    parse_index,
    parse_manifest,
)
from .layout import LocalLayout, RemoteLayout
from .reference import LayoutReference, Reference, RegistryReference, parse_reference
from .registry import RegistryClient
from .results import DEFAULT_OPTIONS, Fetched, ResolvedStack, TransferOptions

__all__ = ["StackReader", "open_stack"]

_INDEX_TYPES = (INDEX_TYPE, "application/vnd.docker.distribution.manifest.list.v2+json")


def make_http(options: TransferOptions) -> HttpClient:
    return HttpClient(
        error=DistributionError,
        timeout=options.timeout,
        retries=options.retries,
        backoff=options.backoff,
        insecure=options.insecure,
    )


def as_reference(ref: str | Reference) -> Reference:
    return parse_reference(ref) if isinstance(ref, str) else ref


class StackReader:
    """An open connection to where a stack is; a context manager."""

    def __init__(self, ref: str | Reference, options: TransferOptions = DEFAULT_OPTIONS) -> None:
        self.ref = as_reference(ref)
        self.http = make_http(options)
        self.store: RegistryClient | LocalLayout | RemoteLayout
        if isinstance(self.ref, RegistryReference):
            self.store = RegistryClient(self.ref, self.http, credentials=options.credentials)
        elif self.ref.path is not None:
            self.store = LocalLayout(self.ref.path, self.ref.tag)
        else:
            assert self.ref.url is not None
            self.store = RemoteLayout(self.ref.url, self.ref.tag, self.http)

    def __enter__(self) -> StackReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    @property
    def where(self) -> str:
        return str(self.ref)

    # -- resolving ------------------------------------------------------------------------

    def top(self) -> tuple[str, bytes, str]:
        """(media type, body, digest) of what the reference names."""
        if isinstance(self.store, RegistryClient):
            assert isinstance(self.ref, RegistryReference)
            found = self.store.get_manifest(self.ref.reference)
            if found is None:
                raise DistributionError(f"{self.where} does not exist (no such tag or digest)")
            return found
        media, body, digest = self.store.resolve()
        return media, body, digest

    def entries(self) -> tuple[str, tuple[IndexEntry, ...] | None, bytes]:
        """The top digest and, for an index, its entries (else None and the manifest)."""
        media, body, digest = self.top()
        if media in _INDEX_TYPES or (not media and b'"manifests"' in body):
            return digest, parse_index(body, f"{self.where} ({digest})"), body
        return digest, None, body

    def resolve(self, platform: str | None = None) -> ResolvedStack:
        """The stack for `platform` (default: the only one, else this machine's)."""
        top, entries, body = self.entries()
        if entries is None:
            manifest = parse_manifest(body, top, f"{self.where} ({top})")
            return self._complete(top, manifest, platform)
        wanted = platform
        if wanted is None:
            wanted = entries[0].platform if len(entries) == 1 else str(build_platform())
        chosen = [e for e in entries if e.platform == wanted]
        if not chosen:
            found = sorted(e.platform or "?" for e in entries)
            raise DistributionError(
                f"{self.where} holds stacks for {', '.join(found)}, not {wanted}"
            )
        return self._complete(top, self._manifest(chosen[0]), wanted)

    def resolve_all(
        self, platforms: Iterable[str] | None = None
    ) -> tuple[str, list[ResolvedStack]]:
        """The top digest and the stack of every platform (or of those named)."""
        top, entries, body = self.entries()
        if entries is None:
            manifest = parse_manifest(body, top, f"{self.where} ({top})")
            stacks = [self._complete(top, manifest, None)]
        else:
            wanted = set(platforms) if platforms is not None else None
            stacks = [
                self._complete(top, self._manifest(e), e.platform)
                for e in entries
                if wanted is None or e.platform in wanted
            ]
        if platforms is not None:
            missing = sorted(set(platforms) - {s.platform for s in stacks})
            if missing:
                raise DistributionError(f"{self.where} holds no stack for {', '.join(missing)}")
        return top, stacks

    def _manifest(self, entry: IndexEntry) -> PlatformManifest:
        where = f"{self.where} ({entry.digest})"
        if isinstance(self.store, RegistryClient):
            found = self.store.get_manifest(entry.digest)
            if found is None:
                raise DistributionError(f"{where}: the index names a manifest the registry lacks")
            body = found[1]
        else:
            body = self.store.read_manifest(entry.digest, entry.size)
        if len(body) != entry.size or digest_of(body) != entry.digest:
            raise DistributionError(f"{where}: the manifest does not match its digest")
        manifest = parse_manifest(body, entry.digest, where)
        if entry.platform and manifest.platform and manifest.platform != entry.platform:
            raise DistributionError(f"{where}: the index and the manifest name other platforms")
        return manifest

    def _complete(
        self, top: str, manifest: PlatformManifest, platform: str | None
    ) -> ResolvedStack:
        where = f"{self.where} ({manifest.digest})"
        check_names(manifest.files, where)
        metadata = self.read(manifest.config, MAX_METADATA)
        manifest = check_against_metadata(manifest, metadata, where)
        if platform and manifest.platform != platform:
            raise DistributionError(f"{where}: the manifest is for {manifest.platform}")
        signature = None
        sig_blob = manifest.blob_named(SIGNATURE_PATH)
        if sig_blob is not None and sig_blob.media_type == SIGNATURE_TYPE:
            signature = self.read(sig_blob, 1 << 20)
        return ResolvedStack(
            reference=self.where,
            digest=top,
            manifest_digest=manifest.digest,
            platform=manifest.platform,
            metadata=metadata,
            signature=signature,
            layers=manifest.layers,
            files=manifest.files,
        )

    # -- blobs --------------------------------------------------------------------------------

    def read(self, blob: Blob, max_size: int) -> bytes:
        """A small blob in memory, its size and digest checked."""
        return self.store.read_blob(blob, max_size)

    def fetch(self, blob: Blob, dest: Path, reporter: Reporter = NULL_REPORTER) -> Fetched:
        """`blob` into the file `dest`, verified while it streams; resumes `dest.partial`.

        `dest` exists afterwards only if it is complete and matches the digest.
        """
        if isinstance(self.store, RegistryClient | RemoteLayout):
            done = self.store.fetch_blob(blob, dest, reporter)
            action = "resumed" if done.resumed_from else "downloaded"
            return Fetched(blob, dest, action, done.received)
        copied = self.store.fetch_blob(blob, dest, reporter)
        return Fetched(blob, dest, "copied" if copied else "linked", copied)


def open_stack(ref: str | Reference, options: TransferOptions = DEFAULT_OPTIONS) -> StackReader:
    """A `StackReader` for `oci://...` or `oci-layout:...` (close it, or use `with`)."""
    reader = StackReader(ref, options)
    path = reader.ref.path if isinstance(reader.ref, LayoutReference) else None
    if path is not None and not path.is_dir():
        reader.close()
        raise DistributionError(f"{path} does not exist (no OCI image layout there)")
    return reader
