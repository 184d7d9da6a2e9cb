"""A client for one repository of an OCI registry (the distribution spec, v2 API).

Blobs: HEAD to learn what the registry has; GET (often redirected to object storage)
streamed into a file and verified; uploads as one PUT (monolithic) or, for registries
that cap request bodies, as PATCH chunks (`Content-Range`, at least the registry's
`OCI-Chunk-Min-Length`) closed by a PUT with the digest; an upload cut off mid-chunk
asks the registry where it stands (GET on the upload URL) and goes on from there.
Cross-repository mounts (`?mount=DIGEST&from=REPO`) where the registry allows them.
Manifests and indexes: GET/HEAD with every media type we read in `Accept`, PUT with
the exact media type; digests are computed here and compared with what the registry
says (`Docker-Content-Digest`), never taken from it.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .._util.http import Download, FileSlice, HttpClient, Reply, is_loopback
from ..errors import DistributionError
from ..progress import NULL_REPORTER, Reporter
from .artifact import INDEX_TYPE, MANIFEST_TYPE, MAX_MANIFEST, Blob, digest_of
from .auth import Credentials, RegistryAuth
from .reference import RegistryReference

__all__ = ["RegistryClient", "UploadOutcome"]

ACCEPT = ", ".join(
    [
        INDEX_TYPE,
        MANIFEST_TYPE,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
_RANGE = re.compile(r"^(?:bytes=)?0-(\d+)$")
_UPLOAD_RESTARTS = 3


@dataclass(frozen=True)
class UploadOutcome:
    """How a blob got into the repository."""

    action: str
    """`sent`, `mounted` or `skipped` (already there)."""
    bytes_sent: int
    requests: int


class RegistryClient:
    """One repository (`ref.repository`) of the registry `ref.host`."""

    def __init__(
        self,
        ref: RegistryReference,
        http: HttpClient,
        *,
        push: bool = False,
        mount_from: str | None = None,
        credentials: Credentials | None = None,
        max_chunk: int | None = None,
    ) -> None:
        self.ref = ref
        self.http = http
        self.max_chunk = max_chunk
        actions = "pull,push" if push else "pull"
        scopes = [f"repository:{ref.repository}:{actions}"]
        if mount_from:
            scopes.append(f"repository:{mount_from}:pull")
        self.auth = RegistryAuth(ref.host, http, scopes=scopes, credentials=credentials)
        self._base: str | None = None
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return str(self.ref)

    # -- addressing -----------------------------------------------------------------------

    def base(self) -> str:
        """`https://HOST`, or `http://HOST` for loopback (or insecure) registries without TLS."""
        with self._lock:
            if self._base is None:
                self._base = self._probe()
            return self._base

    def _probe(self) -> str:
        https = f"https://{self.ref.host}"
        if not (is_loopback(self.ref.hostname) or self.http.insecure):
            return https
        if self.http.speaks_tls(f"{https}/v2/"):
            return https
        return f"http://{self.ref.host}"  # no TLS there, and plain http is allowed here

    def _url(self, kind: str, reference: str = "") -> str:
        return f"{self.base()}/v2/{self.ref.repository}/{kind}/{reference}"

    def _hint(self, reply: Reply) -> str:
        if reply.status == 401:
            creds = self.auth.credentials
            if creds is None:
                return f"no credentials for {self.ref.host}; log in with `docker login`"
            return f"the credentials from {creds.source} were refused"
        if reply.status == 403:
            return f"no permission for {self.ref.repository}"
        return _registry_message(reply)

    def _expect(self, reply: Reply, statuses: tuple[int, ...], action: str) -> Reply:
        if reply.status not in statuses:
            raise self.http.status_error(reply, action, self._hint(reply))
        return reply

    # -- blobs ------------------------------------------------------------------------------

    def has_blob(self, blob: Blob) -> bool:
        """True when the repository holds `blob` (with the right size)."""
        reply = self.http.request("HEAD", self._url("blobs", blob.digest), auth=self.auth)
        if reply.status == 404:
            return False
        self._expect(reply, (200,), f"check {blob.name} in {self.where}")
        length = reply.header("Content-Length")
        return length is None or not length.isdigit() or int(length) == blob.size

    def read_blob(self, blob: Blob, max_size: int) -> bytes:
        """A small blob in memory, verified (metadata, signatures)."""
        if blob.size > max_size:
            raise DistributionError(f"{self.where}: {blob.name} is {blob.size} bytes; too large")
        reply = self.http.request(
            "GET", self._url("blobs", blob.digest), auth=self.auth, max_size=max_size
        )
        self._expect(reply, (200,), f"download {blob.name} from {self.where}")
        _verify(reply.content, blob, self.where)
        return reply.content

    def fetch_blob(self, blob: Blob, dest: Path, reporter: Reporter = NULL_REPORTER) -> Download:
        """Stream `blob` into `dest` (resuming `dest.partial`), verified while it arrives."""
        return self.http.download(
            self._url("blobs", blob.digest),
            dest,
            sha256=blob.hex,
            size=blob.size,
            auth=self.auth,
            reporter=reporter,
            key=f"download:{blob.name}",
            label=f"download {blob.name}",
            what=f"{blob.name} from {self.where}",
        )

    def mount_blob(self, blob: Blob, source_repository: str) -> str | None:
        """Mount `blob` from another repository; None if done, else an upload URL to use."""
        query = urllib.parse.urlencode({"mount": blob.digest, "from": source_repository})
        reply = self.http.request(
            "POST", f"{self._url('blobs', 'uploads/')}?{query}", auth=self.auth, retry=True
        )
        if reply.status == 201:
            return None
        self._expect(reply, (202,), f"start an upload to {self.where}")
        return self._location(reply)

    def upload_blob(
        self,
        blob: Blob,
        path: Path,
        *,
        location: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> UploadOutcome:
        """Send the file `path` as `blob`: one PUT, or chunks when `max_chunk` is smaller."""
        requests = 0
        sent = 0
        for restart in range(_UPLOAD_RESTARTS + 1):
            min_chunk = 0
            if location is None:
                reply = self.http.request(
                    "POST", self._url("blobs", "uploads/"), auth=self.auth, retry=True
                )
                requests += 1
                self._expect(reply, (202,), f"start an upload of {blob.name} to {self.where}")
                location = self._location(reply)
                min_chunk = _int_header(reply, "OCI-Chunk-Min-Length")
            try:
                if self.max_chunk is None or blob.size <= self.max_chunk:
                    requests += 1
                    sent += blob.size
                    try:
                        reply = self.http.request(
                            "PUT",
                            _with_digest(location, blob.digest),
                            headers={"Content-Type": "application/octet-stream"},
                            body=FileSlice(path, 0, blob.size),
                            auth=self.auth,
                            retry=False,
                            action=f"upload {blob.name} to {self.where}",
                            progress=progress,
                        )
                    except DistributionError as exc:  # only transport failures raise here
                        raise _UploadLost(str(exc)) from None
                    self._check_put(reply, blob)
                else:
                    n, nbytes = self._upload_chunks(blob, path, location, min_chunk, progress)
                    requests += n
                    sent += nbytes
                return UploadOutcome("sent", sent, requests)
            except _UploadLost as lost:
                if self.has_blob(blob):  # the last request did arrive
                    return UploadOutcome("sent", sent, requests)
                if restart == _UPLOAD_RESTARTS:
                    raise DistributionError(
                        f"cannot upload {blob.name} to {self.where}: {lost}"
                    ) from None
                location = None
        raise AssertionError("unreachable")

    def _upload_chunks(
        self,
        blob: Blob,
        path: Path,
        location: str,
        min_chunk: int,
        progress: Callable[[int], None] | None,
    ) -> tuple[int, int]:
        assert self.max_chunk is not None
        size = max(self.max_chunk, 1)
        if min_chunk > size:
            raise DistributionError(
                f"{self.where} needs chunks of at least {min_chunk} bytes, more than the "
                f"maximum chunk size of {size}; raise the maximum"
            )
        offset = 0
        requests = 0
        sent = 0
        failures = 0
        while offset < blob.size:
            length = min(size, blob.size - offset)
            try:
                reply = self.http.request(
                    "PATCH",
                    location,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + length - 1}",
                    },
                    body=FileSlice(path, offset, length),
                    auth=self.auth,
                    retry=False,
                    action=f"upload part of {blob.name} to {self.where}",
                    progress=progress,
                )
            except DistributionError as exc:
                reply = None
                problem = str(exc)
            requests += 1
            sent += length
            if reply is not None and reply.status == 202:
                location = self._location(reply)
                end = _range_end(reply)
                offset = end + 1 if end is not None else offset + length
                failures = 0
                continue
            if reply is not None:
                if reply.status == 413:
                    raise DistributionError(
                        f"{self.where} refused a {length}-byte chunk of {blob.name} as too "
                        "large; set a smaller maximum chunk size"
                    )
                problem = f"HTTP {reply.status} {reply.reason}"
            failures += 1
            if failures > self.http.retries:
                raise _UploadLost(problem)
            offset = self._upload_offset(location, problem, tried=offset)
        reply = self.http.request(
            "PUT",
            _with_digest(location, blob.digest),
            headers={"Content-Type": "application/octet-stream"},
            body=b"",
            auth=self.auth,
            retry=True,
            action=f"finish the upload of {blob.name} to {self.where}",
        )
        self._check_put(reply, blob)
        return requests + 1, sent

    def _upload_offset(self, location: str, problem: str, *, tried: int) -> int:
        """Where the registry's copy of an interrupted upload ends, to go on from there.

        `tried`: where the chunk that failed started. `Range: 0-0` is what the reference
        registry says both for an empty upload and for one byte (its end is inclusive):
        when the failed chunk was the first, it means nothing arrived.
        """
        try:
            reply = self.http.request("GET", location, auth=self.auth, retry=True)
        except DistributionError:
            raise _UploadLost(problem) from None
        if reply.status not in (202, 204):
            raise _UploadLost(f"{problem}; the upload session is gone")
        end = _range_end(reply)
        if end is None or (end == 0 and tried == 0):
            return 0
        return end + 1

    def _check_put(self, reply: Reply, blob: Blob) -> None:
        if reply.status == 201:
            return
        if reply.status == 400 and "DIGEST_INVALID" in reply.content.decode("utf-8", "replace"):
            raise DistributionError(
                f"{blob.name} does not match the sha256 {blob.hex[:16]}... its metadata "
                f"records (the registry computed another digest); republish the stack"
            )
        if reply.status in (404, 416) or reply.status >= 500:
            raise _UploadLost(f"HTTP {reply.status} {reply.reason}")
        self._expect(reply, (201,), f"upload {blob.name} to {self.where}")

    def _location(self, reply: Reply) -> str:
        location = reply.header("Location")
        if not location:
            raise DistributionError(f"{self.where} started an upload without a Location header")
        return urllib.parse.urljoin(f"{self.base()}/", location)

    # -- manifests --------------------------------------------------------------------------

    def get_manifest(self, reference: str) -> tuple[str, bytes, str] | None:
        """(media type, body, digest) of a manifest or index, None when there is none."""
        reply = self.http.request(
            "GET",
            self._url("manifests", reference),
            headers={"Accept": ACCEPT},
            auth=self.auth,
            max_size=MAX_MANIFEST,
        )
        if reply.status == 404:
            return None
        self._expect(reply, (200,), f"read the manifest {reference} of {self.where}")
        digest = digest_of(reply.content)
        if reference.startswith("sha256:") and digest != reference:
            raise DistributionError(
                f"{self.where} sent a manifest whose digest is {digest}, not {reference}; "
                "refusing it"
            )
        said = reply.header("Docker-Content-Digest")
        if said and said.startswith("sha256:") and said != digest:
            raise DistributionError(
                f"{self.where}: the manifest {reference} does not match the digest the "
                f"registry gives for it ({said}); refusing it"
            )
        media = (reply.header("Content-Type") or "").split(";")[0].strip()
        return media, reply.content, digest

    def manifest_digest(self, reference: str) -> str | None:
        """The digest a tag (or digest) names now, or None when it names nothing."""
        reply = self.http.request(
            "HEAD", self._url("manifests", reference), headers={"Accept": ACCEPT}, auth=self.auth
        )
        if reply.status == 404:
            return None
        self._expect(reply, (200,), f"read the manifest {reference} of {self.where}")
        said = reply.header("Docker-Content-Digest")
        if said:
            return said
        found = self.get_manifest(reference)
        return found[2] if found else None

    def put_manifest(self, reference: str, media_type: str, body: bytes) -> None:
        reply = self.http.request(
            "PUT",
            self._url("manifests", reference),
            headers={"Content-Type": media_type},
            body=body,
            auth=self.auth,
            action=f"push the manifest {reference} to {self.where}",
        )
        self._expect(reply, (201,), f"push the manifest {reference} to {self.where}")
        said = reply.header("Docker-Content-Digest")
        if said and said != digest_of(body):
            raise DistributionError(
                f"{self.where} stored the manifest under {said}, not {digest_of(body)}"
            )


class _UploadLost(Exception):
    """The upload session broke in a way only a new session fixes."""


def _verify(data: bytes, blob: Blob, where: str) -> None:
    if len(data) != blob.size or hashlib.sha256(data).hexdigest() != blob.hex:
        raise DistributionError(
            f"{where}: {blob.name} does not match its digest {blob.digest} "
            f"({len(data)} bytes, expected {blob.size}); refusing it"
        )


def _with_digest(location: str, digest: str) -> str:
    separator = "&" if urllib.parse.urlsplit(location).query else "?"
    return f"{location}{separator}digest={urllib.parse.quote(digest, safe='')}"


def _int_header(reply: Reply, name: str) -> int:
    value = (reply.header(name) or "").strip()
    return int(value) if value.isdigit() else 0


def _range_end(reply: Reply) -> int | None:
    match = _RANGE.match((reply.header("Range") or "").strip())
    return int(match[1]) if match else None


def _registry_message(reply: Reply) -> str:
    """The registry's own explanation (`errors[0].message` of the spec's error body)."""
    try:
        errors = json.loads(reply.content).get("errors")
        first = errors[0]
        text = str(first.get("message") or first.get("code") or "")
    except (ValueError, AttributeError, IndexError, TypeError, KeyError):
        return ""
    return text[:200]
