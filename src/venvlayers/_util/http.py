"""The one HTTP client of venvlayers: requests, verified downloads, streaming uploads.

Everything that talks HTTP (runtime downloads, `http(s)://` deploy sources, OCI
registries) goes through `HttpClient`, so timeouts, retries, TLS, redirects and error
messages behave the same everywhere. It is built on `httpx` (one connection pool per
client, kept alive between requests) and knows nothing about what it transfers.

    with HttpClient(error=DeployError) as client:
        reply = client.request("GET", url, expect=(200,))        # Reply: status, headers, content
        data = client.get_bytes(url, max_size=1 << 20)            # a small file, whole
        done = client.download(url, dest, sha256=hexdigest, size=n, reporter=reporter)
        reply = client.request("PUT", url, body=FileSlice(path), expect=(201,))

The contract:

- **Timeouts**: a connection or a read that stalls for `timeout` seconds fails;
  `timeout` defaults to `$VENVLAYERS_DOWNLOAD_TIMEOUT`, else 60 (`download_timeout()`).
  A slow but moving transfer never times out.
- **Retries** with exponential backoff (`backoff * 2**n`, capped, `Retry-After` honoured)
  on connection errors, stalls, 5xx and 429. Only requests that can safely be repeated
  are retried by default (GET, HEAD, PUT, DELETE); pass `retry=` to decide otherwise.
  A `FileSlice` body is re-read from disk for each attempt; no body is held in memory.
- **Downloads** (`download`) stream into `DEST.partial`, hashing (sha256) and counting
  as bytes arrive, refusing at once more bytes than expected, and rename to `DEST` only
  when size and hash match (after an fsync). An interrupted transfer is resumed with
  `Range` from what `DEST.partial` holds, in the same call or in a later one (after a
  crash): a `206` must carry a `Content-Range` that starts where we are and agrees with
  the expected size; a server that ignores `Range` (`200`) restarts the file cleanly.
  A resumed file whose hash fails is fetched once more from byte 0 before giving up.
- **Progress** goes to the `Reporter` (`begin/advance/end`), for downloads by key
  `download:NAME` unless `key=` says otherwise; uploads report through `progress=`.
- **Errors** are one line, `cannot download URL: HTTP 404 Not Found (hint)`, raised as
  the client's `error` class (a `VenvLayersError`). Query strings never appear in
  messages: they often carry signed credentials.
- **Authentication** is a hook (`AuthHook`) attached per request: it supplies headers
  for the origin (scheme, host, port) the caller addressed and is told about a `401`
  from it, so it can fetch a new token. Redirects are followed here, not by httpx: a
  redirect to another origin (registries send blob downloads to object storage) is
  requested without the hook and without the caller's `Authorization`, and an
  `https` -> `http` redirect is refused.
- **Plain http** is accepted only for loopback hosts, or for any host when the client
  is created with `insecure=True`. TLS certificates are checked against the system's
  store (`SSL_CERT_FILE`/`SSL_CERT_DIR` apply), falling back to certifi's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from ..errors import TransferError, VenvLayersError
from ..progress import NULL_REPORTER, Reporter

__all__ = [
    "DEFAULT_TIMEOUT",
    "TIMEOUT_ENV",
    "AuthHook",
    "Download",
    "FileSlice",
    "HttpClient",
    "Reply",
    "download_timeout",
    "is_loopback",
    "redact",
    "same_origin",
]

from .httpbase import (
    _IDEMPOTENT,
    _MAX_BACKOFF,
    _MAX_REDIRECTS,
    _MAX_RETRY_AFTER,
    _RETRY_STATUSES,
    DEFAULT_TIMEOUT,
    TIMEOUT_ENV,
    USER_AGENT,
    AuthHook,
    Body,
    Download,
    FileSlice,
    Reply,
    _action,
    _certificate_problem,
    _check_content_range,
    _fsync,
    _partial_size,
    _read_bounded,
    _read_small,
    _reply,
    _resume_point,
    _Retry,
    _retry_after,
    _ssl_context,
    _transport_reason,
    _untrusted,
    download_timeout,
    is_loopback,
    redact,
    same_origin,
)


@dataclass
class _Counts:
    attempts: int = 0
    received: int = 0
    kept: int = 0
    begun: bool = False


class HttpClient:
    """A pooled HTTP client; use as a context manager or call `close()`.

    `error` is the `VenvLayersError` subclass raised for every failure. `retries` is
    the number of repeats after the first attempt; `backoff` the first delay in seconds.
    `transport` replaces the network (tests).
    """

    def __init__(
        self,
        *,
        error: type[VenvLayersError] = TransferError,
        timeout: float | None = None,
        retries: int = 4,
        backoff: float = 0.5,
        insecure: bool = False,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.error = error
        self.timeout = download_timeout(timeout, error)
        self.retries = retries
        self.backoff = backoff
        self.insecure = insecure
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.timeout),
            follow_redirects=False,
            verify=_ssl_context(),
            headers={"User-Agent": USER_AGENT},
            transport=transport,
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        )

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def check_url(self, url: str) -> None:
        """Raise unless `url` is https, or http to a loopback host (or any, if insecure)."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise self.error(f"{redact(url)} is not a valid URL ({exc})") from None
        if parsed.scheme == "https":
            return
        if parsed.scheme != "http":
            raise self.error(f"cannot fetch {redact(url)}: only http(s) URLs work")
        if not (self.insecure or is_loopback(parsed.host)):
            raise self.error(
                f"refusing plain http to {parsed.host} ({redact(url)}): use https, "
                "or allow it explicitly (--insecure)"
            )

    # -- requests -----------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        auth: AuthHook | None = None,
        expect: Collection[int] | None = None,
        retry: bool | None = None,
        max_size: int = 16 << 20,
        action: str | None = None,
        hint: str = "",
        progress: Callable[[int], None] | None = None,
    ) -> Reply:
        """Send one request (following redirects) and read its reply in full.

        With `expect`, any other status raises `error` (`cannot ACTION: HTTP ...`);
        without it every reply is returned and only transport failures raise.
        A body over `max_size` bytes raises.
        """
        with self._open(
            method,
            url,
            headers=headers,
            body=body,
            auth=auth,
            retry=retry,
            action=action,
            hint=hint,
            progress=progress,
            read=max_size,
        ) as (response, content):
            reply = _reply(response, content)
        if expect is not None and reply.status not in expect:
            raise self.status_error(reply, action or _action(method, url), hint)
        return reply

    def get_bytes(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: AuthHook | None = None,
        max_size: int = 64 << 20,
        hint: str = "",
    ) -> bytes:
        """The whole body of a `200` to GET `url` (small files: metadata, manifests)."""
        reply = self.request(
            "GET", url, headers=headers, auth=auth, expect=(200,), max_size=max_size, hint=hint
        )
        return reply.content

    def status_error(self, reply: Reply, action: str, hint: str = "") -> VenvLayersError:
        """The one-line error for an unexpected status."""
        tail = f" ({hint})" if hint else ""
        return self.error(f"cannot {action}: HTTP {reply.status} {reply.reason}{tail}".rstrip())

    # -- downloads ----------------------------------------------------------------------

    def download(
        self,
        url: str,
        dest: Path,
        *,
        sha256: str,
        size: int | None = None,
        headers: Mapping[str, str] | None = None,
        auth: AuthHook | None = None,
        resume: bool = True,
        reporter: Reporter = NULL_REPORTER,
        key: str | None = None,
        label: str | None = None,
        what: str | None = None,
        hint: str = "",
    ) -> Download:
        """Fetch `url` into `dest`, verified against `sha256` (hex) and `size`.

        `dest` appears only complete and verified; meanwhile the bytes sit in
        `dest.partial`, which a later call resumes from (unless `resume=False`).
        `what` names the download in errors (default: the URL without its query).
        """
        what = what or redact(url)
        partial = dest.with_name(dest.name + ".partial")
        key = key or f"download:{dest.name}"
        tail = f" ({hint})" if hint else ""
        counts = _Counts()
        restarted = False
        if not resume:
            partial.unlink(missing_ok=True)
        label = label or f"download {dest.name}"
        if size is not None:  # else once the server says how big (Content-Length)
            reporter.begin(key, label, total=size)
            counts.begun = True
        status = "failed"
        try:
            while True:
                counts.attempts += 1
                offset, digest = _resume_point(partial, size)
                if counts.attempts == 1 and offset:
                    counts.kept = offset
                    reporter.advance(key, offset)
                if size is None or offset < size:
                    try:
                        digest = self._download_once(
                            url,
                            partial,
                            offset,
                            digest,
                            size,
                            headers,
                            auth,
                            reporter,
                            key,
                            label,
                            what,
                            hint,
                            counts,
                        )
                    except _Retry as exc:
                        if counts.attempts > self.retries:
                            raise self.error(f"download of {what} failed: {exc}{tail}") from None
                        self._sleep(counts.attempts, exc.retry_after)
                        continue
                total = _partial_size(partial)
                if size is not None and total < size:
                    # the body ended early without a transport error: resume it
                    if counts.attempts > self.retries:
                        raise self.error(
                            f"download of {what} is truncated: {total} of {size} bytes{tail}"
                        )
                    continue
                actual = digest.hexdigest()
                if actual != sha256:
                    partial.unlink(missing_ok=True)
                    if (counts.kept or counts.attempts > 1) and not restarted:
                        # the kept bytes may belong to another file: one clean try
                        restarted = True
                        counts.kept = 0
                        reporter.advance(key, -total)
                        continue
                    raise self.error(
                        f"download of {what} does not match its sha256 "
                        f"(got {actual}, {total} bytes, expected {sha256}){tail}"
                    )
                _fsync(partial)
                os.replace(partial, dest)
                status = "done"
                return Download(
                    redact(url),
                    dest,
                    total,
                    actual,
                    counts.received,
                    counts.kept,
                    counts.attempts,
                )
        except OSError as exc:
            raise self.error(f"cannot write {partial}: {exc.strerror or exc}") from None
        finally:
            if not counts.begun:
                reporter.begin(key, label)
            reporter.end(key, status)

    def _download_once(
        self,
        url: str,
        partial: Path,
        offset: int,
        digest: hashlib._Hash,
        size: int | None,
        headers: Mapping[str, str] | None,
        auth: AuthHook | None,
        reporter: Reporter,
        key: str,
        label: str,
        what: str,
        hint: str,
        counts: _Counts,
    ) -> hashlib._Hash:
        """One GET into `partial` from `offset`; the digest of all of `partial`.

        Raises `_Retry` when the transfer broke off (the bytes so far are kept).
        """
        tail = f" ({hint})" if hint else ""
        wanted = {"Accept-Encoding": "identity", **(headers or {})}
        if offset:
            wanted["Range"] = f"bytes={offset}-"
        with self._open(
            "GET",
            url,
            headers=wanted,
            auth=auth,
            retry=True,
            read=None,
            action=f"download {what}",
            hint=hint,
        ) as (
            response,
            _,
        ):
            if response.status_code == 416 and offset:
                partial.unlink(missing_ok=True)  # what we hold does not fit the file
                reporter.advance(key, -offset)
                counts.kept = 0
                raise _Retry("the server refused to resume (HTTP 416)")
            if response.status_code not in (200, 206):
                reply = _reply(response, b"")
                raise self.status_error(reply, f"download {what}", hint)
            if not counts.begun:
                length = response.headers.get("Content-Length", "")
                start = offset if response.status_code == 206 else 0
                reporter.begin(key, label, total=start + int(length) if length.isdigit() else None)
                counts.begun = True
            if response.status_code == 206 and offset:
                try:
                    _check_content_range(response, offset, size, self.error, what)
                except _Retry:
                    partial.unlink(missing_ok=True)  # do not splice unknown bytes: restart
                    reporter.advance(key, -offset)
                    counts.kept = 0
                    raise
                mode = "ab"
            else:
                if offset:  # Range ignored: the whole file is coming again
                    reporter.advance(key, -offset)
                    counts.kept = 0
                    digest = hashlib.sha256()
                offset = 0
                mode = "wb"
                announced = response.headers.get("Content-Length", "")
                if size is not None and announced.isdigit() and int(announced) != size:
                    raise self.error(
                        f"download of {what} has the wrong size: the server "
                        f"announces {announced} bytes, expected {size}{tail}"
                    )
            written = offset
            with partial.open(mode) as f:
                try:
                    for chunk in response.iter_bytes():
                        written += len(chunk)
                        if size is not None and written > size:
                            f.close()
                            partial.unlink(missing_ok=True)
                            raise self.error(
                                f"download of {what} is oversized: more than the "
                                f"expected {size} bytes{tail}"
                            )
                        f.write(chunk)
                        digest.update(chunk)
                        counts.received += len(chunk)
                        reporter.advance(key, len(chunk))
                except httpx.TransportError as exc:
                    raise _Retry(
                        f"{_transport_reason(exc, self.timeout)} after {written} bytes"
                    ) from None
            return digest

    # -- the core: redirects, auth, retries -----------------------------------------------

    @contextlib.contextmanager
    def _open(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None,
        body: Body = None,
        auth: AuthHook | None,
        retry: bool | None,
        read: int | None,
        action: str | None = None,
        hint: str = "",
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[tuple[httpx.Response, bytes]]:
        """Yield the final response (and its body, read up to `read` bytes unless None).

        Statuses worth a retry (5xx, 429) and transport errors are retried here; the
        yielded response is open for streaming when `read` is None.
        """
        self.check_url(url)
        retry = method in _IDEMPOTENT if retry is None else retry
        attempt = 0
        while True:
            attempt += 1
            try:
                response, content = self._attempt(method, url, headers, body, auth, read, progress)
            except _Retry as exc:
                if not retry or attempt > self.retries:
                    what = action or _action(method, url)
                    hint_text = f" ({hint})" if hint else ""
                    raise self.error(f"cannot {what}: {exc}{hint_text}") from None
                self._sleep(attempt, exc.retry_after)
                continue
            if response.status_code in _RETRY_STATUSES and retry and attempt <= self.retries:
                delay = _retry_after(response.headers.get("Retry-After"))
                response.close()
                self._sleep(attempt, delay)
                continue
            try:
                yield response, content
            finally:
                response.close()
            return

    def _attempt(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        body: Body,
        auth: AuthHook | None,
        read: int | None,
        progress: Callable[[int], None] | None,
    ) -> tuple[httpx.Response, bytes]:
        origin = url
        current = url
        challenges = 0
        for _hop in range(_MAX_REDIRECTS + 1):
            same = same_origin(current, origin)
            sent = dict(headers or {})
            if not same:
                sent = {k: v for k, v in sent.items() if k.lower() not in ("authorization",)}
            if auth is not None and same:
                sent.update(auth.headers(current))
            response = self._send(method, current, sent, body, progress)
            status = response.status_code
            if status == 401 and auth is not None and same and challenges < 2:
                reply = _reply(response, _read_small(response))
                response.close()
                challenges += 1
                if auth.challenged(reply):
                    continue
                return response, reply.content
            if status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                target = urllib.parse.urljoin(current, response.headers["Location"])
                response.close()
                self._check_redirect(current, target)
                if status == 303 or (status in (301, 302) and method not in ("GET", "HEAD")):
                    method, body = "GET", None
                current = target
                continue
            if read is None:
                return response, b""
            try:
                return response, _read_bounded(response, read, self.error, current)
            except httpx.TransportError as exc:
                raise _Retry(_transport_reason(exc, self.timeout)) from None
            finally:
                response.close()  # read in full (or given up on): the connection goes back
        raise self.error(f"cannot fetch {redact(url)}: more than {_MAX_REDIRECTS} redirects")

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: Body,
        progress: Callable[[int], None] | None,
    ) -> httpx.Response:
        content: bytes | Iterator[bytes] | None
        if isinstance(body, FileSlice):
            headers = {**headers, "Content-Length": str(body.size())}
            content = body.chunks(progress)
        else:
            content = body
        try:
            request = self._client.build_request(method, url, headers=headers, content=content)
            response = self._client.send(request, stream=True)
        except httpx.TransportError as exc:
            if isinstance(exc, httpx.UnsupportedProtocol):
                raise self.error(f"cannot fetch {redact(url)}: {exc}") from None
            untrusted = _certificate_problem(exc)
            if untrusted:  # retrying cannot help
                raise self.error(_untrusted(url, untrusted)) from None
            raise _Retry(_transport_reason(exc, self.timeout)) from None
        if isinstance(body, bytes) and progress is not None:
            progress(len(body))
        return response

    def speaks_tls(self, url: str) -> bool:
        """Whether the `https://` `url` answers over TLS at all (one GET, no retries).

        False when the handshake fails because the other end is not TLS (a plain http
        server); an untrusted certificate raises, since falling back would hide it.
        """
        try:
            self._client.get(url).close()
        except httpx.TransportError as exc:
            untrusted = _certificate_problem(exc)
            if untrusted:
                raise self.error(_untrusted(url, untrusted)) from None
            return False
        return True

    def _check_redirect(self, source: str, target: str) -> None:
        parsed = httpx.URL(target)
        downgrade = httpx.URL(source).scheme == "https" and parsed.scheme == "http"
        if downgrade and not (self.insecure or is_loopback(parsed.host)):
            raise self.error(
                f"refusing the redirect from {redact(source)} to plain http ({redact(target)})"
            )
        self.check_url(target)

    def _sleep(self, attempt: int, retry_after: float | None) -> None:
        delay = min(self.backoff * 2 ** (attempt - 1), _MAX_BACKOFF)
        delay *= 0.75 + random.random() / 2  # spread out clients that failed together
        if retry_after is not None:
            delay = max(delay, min(retry_after, _MAX_RETRY_AFTER))
        time.sleep(delay)
