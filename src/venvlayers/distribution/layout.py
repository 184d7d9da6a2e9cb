"""OCI image layouts: a directory (`oci-layout`, `index.json`, `blobs/sha256/HEX`).

Written here as the same artifact a registry gets (any static file server or bucket can
then serve the tree, and `skopeo copy oci:DIR docker://...` accepts it), and read back
from disk or from an `http(s)://` base URL. `index.json` names each pushed stack by its
tag (`org.opencontainers.image.ref.name`).

Writes are crash-safe: a blob is copied to `HEX.partial`, hashed on the way, fsynced and
renamed (or hard-linked after hashing the source, when it is on the same file system);
manifests next; `index.json` last, atomically. An interrupted push leaves only blobs
nothing names yet, and the next push reuses them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from .._util.fs import write_atomic
from .._util.http import Download, HttpClient
from ..errors import DistributionError
from ..progress import NULL_REPORTER, Reporter
from .artifact import INDEX_TYPE, MANIFEST_TYPE, MAX_MANIFEST, Blob, digest_of, encode
from .reference import DEFAULT_TAG

__all__ = ["LayoutReader", "LocalLayout", "RemoteLayout", "copy_verified"]

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}
_CHUNK = 1 << 20


class LayoutReader:
    """What reading a layout needs, wherever it is: `index.json` and blobs by digest."""

    where: str
    tag: str | None

    def read_file(self, name: str, max_size: int) -> bytes | None:
        raise NotImplementedError

    def read_blob(self, blob: Blob, max_size: int) -> bytes:
        data = self.read_file(f"blobs/sha256/{blob.hex}", max_size)
        if data is None:
            raise DistributionError(f"{self.where} has no blob {blob.digest} ({blob.name})")
        if len(data) != blob.size or digest_of(data) != blob.digest:
            raise DistributionError(
                f"{self.where}: the blob of {blob.name} does not match its digest "
                f"{blob.digest}; refusing it"
            )
        return data

    def index(self) -> list[dict[str, object]]:
        raw = self.read_file(INDEX_FILE, MAX_MANIFEST)
        if raw is None:
            raise DistributionError(
                f"{self.where} is not an OCI image layout: it has no {INDEX_FILE}"
            )
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DistributionError(f"{self.where}/{INDEX_FILE}: not valid JSON ({exc})") from None
        entries = document.get("manifests") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise DistributionError(f"{self.where}/{INDEX_FILE}: 'manifests' is not a list")
        return [e for e in entries if isinstance(e, dict)]

    def resolve(self) -> tuple[str, bytes, str]:
        """(media type, body, digest) of what the tag names (or the only entry)."""
        entry = self._entry(self.tag)
        media, digest, size = entry.get("mediaType"), entry.get("digest"), entry.get("size")
        if not isinstance(media, str) or not isinstance(digest, str) or not isinstance(size, int):
            raise DistributionError(f"{self.where}/{INDEX_FILE}: an entry lacks digest or size")
        body = self.read_manifest(digest, size)
        return media, body, digest

    def read_manifest(self, digest: str, size: int | None = None) -> bytes:
        blob = Blob(digest, size if size is not None else -1, MANIFEST_TYPE, digest)
        data = self.read_file(f"blobs/sha256/{blob.hex}", MAX_MANIFEST)
        if data is None:
            raise DistributionError(f"{self.where} has no manifest {digest}")
        if digest_of(data) != digest or (size is not None and len(data) != size):
            raise DistributionError(
                f"{self.where}: the manifest {digest} does not match its digest; refusing it"
            )
        return data

    def _entry(self, tag: str | None) -> dict[str, object]:
        entries = self.index()
        tags = [_ref_name(e) for e in entries]
        if tag is None and len(entries) == 1:
            return entries[0]
        wanted = tag or DEFAULT_TAG
        for entry, name in zip(entries, tags, strict=True):
            if name == wanted:
                return entry
        known = sorted(str(t) for t in tags if isinstance(t, str))
        listed = f"its tags: {', '.join(known)}" if known else "it has no tagged entries"
        raise DistributionError(f"{self.where} has no tag {wanted!r} ({listed})")

    def current(self, tag: str) -> str | None:
        """The digest `tag` names, or None (also when there is no layout yet)."""
        try:
            entries = self.index()
        except DistributionError:
            return None
        for entry in entries:
            if _ref_name(entry) == tag:
                digest = entry.get("digest")
                return digest if isinstance(digest, str) else None
        return None


class LocalLayout(LayoutReader):
    """A layout directory on this machine, for reading and writing."""

    def __init__(self, path: Path, tag: str | None) -> None:
        self.path = path.absolute()
        self.tag = tag
        self.where = str(path)

    def blob_path(self, digest: str) -> Path:
        return self.path / "blobs" / "sha256" / digest.removeprefix("sha256:")

    def read_file(self, name: str, max_size: int) -> bytes | None:
        path = self.path / name
        try:
            if path.stat().st_size > max_size:
                raise DistributionError(f"{path} is larger than {max_size} bytes; refusing it")
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DistributionError(f"cannot read {path}: {exc.strerror}") from None

    def fetch_blob(self, blob: Blob, dest: Path, reporter: Reporter = NULL_REPORTER) -> int:
        """Put `blob` at `dest`, checked; hard-linked when possible. Returns bytes copied."""
        source = self.blob_path(blob.digest)
        if not source.exists():
            raise DistributionError(f"{self.where} has no blob {blob.digest} ({blob.name})")
        return copy_verified(source, dest, blob, reporter, link=True, where=self.where)

    # -- writing ----------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the layout's skeleton (or check an existing directory is one)."""
        if (
            self.path.exists()
            and not (self.path / LAYOUT_FILE).exists()
            and any(self.path.iterdir())
        ):
            raise DistributionError(
                f"{self.path} exists and is not an OCI image layout (no {LAYOUT_FILE}); "
                "choose an empty or new directory"
            )
        try:
            (self.path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            if not (self.path / LAYOUT_FILE).exists():
                write_atomic(self.path / LAYOUT_FILE, json.dumps(LAYOUT_VERSION))
        except OSError as exc:
            raise DistributionError(f"cannot write {self.path}: {exc.strerror}") from None

    def has_blob(self, blob: Blob) -> bool:
        try:
            return self.blob_path(blob.digest).stat().st_size == blob.size
        except FileNotFoundError:
            return False

    def put_blob(self, blob: Blob, source: Path, reporter: Reporter) -> tuple[str, int]:
        """Store `source` as `blob`: (`linked` or `copied`, bytes copied)."""
        dest = self.blob_path(blob.digest)
        copied = copy_verified(source, dest, blob, reporter, link=True, where=str(source))
        return ("copied" if copied else "linked"), copied

    def put_bytes(self, body: bytes) -> str:
        digest = digest_of(body)
        path = self.blob_path(digest)
        if not path.exists():
            try:
                write_atomic(path, body)
            except OSError as exc:
                raise DistributionError(f"cannot write {path}: {exc.strerror}") from None
        return digest

    def set_tag(self, tag: str, body: bytes) -> None:
        """Point `tag` at the index `body` (already stored) in `index.json`."""
        try:
            entries = self.index()
        except DistributionError:
            entries = []
        kept = [e for e in entries if _ref_name(e) != tag]
        kept.append(
            {
                "mediaType": INDEX_TYPE,
                "digest": digest_of(body),
                "size": len(body),
                "annotations": {REF_NAME: tag},
            }
        )
        document = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": kept}
        try:
            write_atomic(self.path / INDEX_FILE, encode(document))
        except OSError as exc:
            raise DistributionError(
                f"cannot write {self.path / INDEX_FILE}: {exc.strerror}"
            ) from None


class RemoteLayout(LayoutReader):
    """A layout behind an `http(s)://` base URL (a static file server, a bucket)."""

    def __init__(self, url: str, tag: str | None, http: HttpClient) -> None:
        self.url = url.rstrip("/")
        self.tag = tag
        self.where = self.url
        self.http = http

    def read_file(self, name: str, max_size: int) -> bytes | None:
        reply = self.http.request("GET", f"{self.url}/{name}", max_size=max_size)
        if reply.status == 404:
            return None
        if reply.status != 200:
            raise self.http.status_error(reply, f"download {self.url}/{name}")
        return reply.content

    def fetch_blob(self, blob: Blob, dest: Path, reporter: Reporter = NULL_REPORTER) -> Download:
        return self.http.download(
            f"{self.url}/blobs/sha256/{blob.hex}",
            dest,
            sha256=blob.hex,
            size=blob.size,
            reporter=reporter,
            key=f"download:{blob.name}",
            label=f"download {blob.name}",
            what=f"{blob.name} from {self.where}",
        )


def _ref_name(entry: dict[str, object]) -> str | None:
    annotations = entry.get("annotations")
    name = annotations.get(REF_NAME) if isinstance(annotations, dict) else None
    return name if isinstance(name, str) else None


def copy_verified(
    source: Path, dest: Path, blob: Blob, reporter: Reporter, *, link: bool, where: str
) -> int:
    """Put `source` at `dest` after checking it is `blob`; the bytes copied (0: linked).

    A hard link when `link` and both are on one file system (the source is hashed
    first), else a copy to `dest.partial` hashed on the way, fsynced and renamed.
    """
    key = f"copy:{blob.name}"
    partial = dest.with_name(dest.name + ".partial")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if link:
            _check_file(source, blob, where)
            partial.unlink(missing_ok=True)
            try:
                os.link(source, partial)
            except OSError:
                pass
            else:
                os.replace(partial, dest)
                return 0
        reporter.begin(key, f"copy {blob.name}", total=blob.size)
        status = "failed"
        try:
            digest = hashlib.sha256()
            size = 0
            with source.open("rb") as src, partial.open("wb") as out:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                    reporter.advance(key, len(chunk))
                out.flush()
                os.fsync(out.fileno())
            if size != blob.size or digest.hexdigest() != blob.hex:
                partial.unlink(missing_ok=True)
                raise DistributionError(
                    f"{where}: {blob.name} does not match its digest {blob.digest} "
                    f"({size} bytes, expected {blob.size}); refusing it"
                )
            os.replace(partial, dest)
            status = "done"
            return size
        finally:
            reporter.end(key, status)
    except OSError as exc:
        raise DistributionError(f"cannot copy {source} to {dest}: {exc.strerror}") from None


def _check_file(path: Path, blob: Blob, where: str) -> None:
    size = path.stat().st_size
    if size == blob.size:
        with path.open("rb") as f:
            if hashlib.file_digest(f, "sha256").hexdigest() == blob.hex:
                return
    raise DistributionError(
        f"{where}: {blob.name} does not match its digest {blob.digest}; refusing it"
    )


def remove_quietly(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
