"""Values and helpers of the HTTP client (`_util.http`): replies, bodies, URLs, errors.

Kept apart so that `http` itself reads as the client: requests, retries, redirects
and verified downloads.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import ipaddress
import os
import re
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import certifi
import httpx

from ..errors import TransferError, VenvLayersError

TIMEOUT_ENV = "VENVLAYERS_DOWNLOAD_TIMEOUT"
DEFAULT_TIMEOUT = 60.0
USER_AGENT = "venvlayers"

_CHUNK = 1 << 20
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_MAX_REDIRECTS = 10
_MAX_BACKOFF = 30.0
_MAX_RETRY_AFTER = 60.0
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def download_timeout(
    timeout: float | None = None, error: type[VenvLayersError] = TransferError
) -> float:
    """`timeout`, else `$VENVLAYERS_DOWNLOAD_TIMEOUT`, else 60 seconds."""
    if timeout is not None:
        return timeout
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        seconds = float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise error(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds; set it to e.g. 60")
    return seconds


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redact(url: str | httpx.URL) -> str:
    """`url` without its query, fragment and user info, for messages."""
    parts = urllib.parse.urlsplit(str(url))
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def same_origin(a: str | httpx.URL, b: str | httpx.URL) -> bool:
    """Same scheme, host and port (the default port counts as given)."""
    ua, ub = httpx.URL(str(a)), httpx.URL(str(b))
    return (ua.scheme, ua.host, _port(ua)) == (ub.scheme, ub.host, _port(ub))


def _port(url: httpx.URL) -> int | None:
    return url.port or {"http": 80, "https": 443}.get(url.scheme)


# -- values -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A response read in full: status, headers and (bounded) body."""

    status: int
    reason: str
    url: str
    """The URL that answered (after redirects)."""
    headers: Mapping[str, str]
    """Case-insensitive."""
    content: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass(frozen=True)
class FileSlice:
    """A request body read from `path`, `length` bytes from `offset` (to the end if None)."""

    path: Path
    offset: int = 0
    length: int | None = None

    def size(self) -> int:
        if self.length is not None:
            return self.length
        return self.path.stat().st_size - self.offset

    def chunks(self, progress: Callable[[int], None] | None) -> Iterator[bytes]:
        left = self.size()
        with self.path.open("rb") as f:
            f.seek(self.offset)
            while left > 0:
                chunk = f.read(min(_CHUNK, left))
                if not chunk:
                    raise OSError(f"{self.path} is shorter than expected")
                left -= len(chunk)
                if progress is not None:
                    progress(len(chunk))
                yield chunk


@dataclass(frozen=True)
class Download:
    """What `HttpClient.download` did."""

    url: str
    path: Path
    size: int
    sha256: str
    received: int
    """Bytes that came over the network in this call."""
    resumed_from: int
    """Bytes of an earlier partial download that were kept (0: started afresh)."""
    attempts: int


class AuthHook(Protocol):
    """Credentials for one origin; see the module docstring for when it is called."""

    def headers(self, url: str) -> Mapping[str, str]:
        """Headers (e.g. `Authorization`) to send with a request to `url`."""
        ...

    def challenged(self, reply: Reply) -> bool:
        """`reply` is a 401 from the origin; True when new credentials are ready to retry."""
        ...


Body = bytes | FileSlice | None


# -- the client -------------------------------------------------------------------------


class _Retry(Exception):
    """One attempt failed in a way worth repeating; `message` explains it."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# -- helpers ----------------------------------------------------------------------------


def _ssl_context() -> ssl.SSLContext:
    """The system's trust store (SSL_CERT_FILE/DIR honoured), else certifi's bundle."""
    context = ssl.create_default_context()
    if not context.cert_store_stats().get("x509_ca") and not context.get_ca_certs():
        with contextlib.suppress(OSError):
            context.load_verify_locations(certifi.where())
    return context


def _reply(response: httpx.Response, content: bytes) -> Reply:
    return Reply(
        status=response.status_code,
        reason=response.reason_phrase or "",
        url=str(response.url),
        headers=httpx.Headers(response.headers),
        content=content,
    )


def _read_bounded(
    response: httpx.Response, limit: int, error: type[VenvLayersError], url: str
) -> bytes:
    parts: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > limit:
            raise error(f"{redact(url)} sent more than {limit} bytes; refusing it")
        parts.append(chunk)
    return b"".join(parts)


def _read_small(response: httpx.Response) -> bytes:
    with contextlib.suppress(httpx.HTTPError):
        return _read_bounded(response, 1 << 20, TransferError, str(response.url))
    return b""


def _action(method: str, url: str) -> str:
    if method in ("GET", "HEAD"):
        return f"download {redact(url)}" if method == "GET" else f"check {redact(url)}"
    if method == "DELETE":
        return f"delete {redact(url)}"
    return f"upload to {redact(url)}"


def _certificate_problem(exc: BaseException) -> str | None:
    """The reason of a certificate verification failure behind `exc`, if that is what it is."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def _untrusted(url: str, reason: str) -> str:
    return (
        f"cannot connect to {redact(url)}: its TLS certificate is not trusted ({reason}); "
        "add its CA to the system's store or point SSL_CERT_FILE at it"
    )


def _transport_reason(exc: httpx.TransportError, timeout: float) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return f"no connection within {timeout:g}s"
    if isinstance(exc, httpx.TimeoutException):
        return f"no data for {timeout:g}s"
    if isinstance(exc, httpx.ConnectError):
        text = str(exc)
        if "refused" in text.lower():
            return "connection refused"
        if "name or service not known" in text.lower() or "nodename" in text.lower():
            return "unknown host"
        return text or "cannot connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the server closed the connection"
    return str(exc) or type(exc).__name__


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    with contextlib.suppress(TypeError, ValueError, IndexError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


def _check_content_range(
    response: httpx.Response,
    offset: int,
    size: int | None,
    error: type[VenvLayersError],
    what: str,
) -> None:
    header = response.headers.get("Content-Range", "")
    match = _CONTENT_RANGE.match(header.strip())
    if match is None:
        raise _Retry(f"a resumed download came without a valid Content-Range ({header!r})")
    start, end, total = int(match[1]), int(match[2]), match[3]
    if start != offset or end < start:
        raise _Retry(f"asked for bytes from {offset}, the server sent Content-Range {header!r}")
    if size is not None and ((total != "*" and int(total) != size) or end != size - 1):
        raise error(
            f"download of {what} has the wrong size: the server says {header!r}, "
            f"expected {size} bytes"
        )


def _resume_point(partial: Path, size: int | None) -> tuple[int, hashlib._Hash]:
    """How much of `partial` to keep, and the sha256 of those bytes."""
    digest = hashlib.sha256()
    try:
        offset = partial.stat().st_size
    except FileNotFoundError:
        return 0, digest
    if size is not None and offset > size:
        partial.unlink()
        return 0, digest
    with partial.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return offset, digest


def _partial_size(partial: Path) -> int:
    try:
        return partial.stat().st_size
    except FileNotFoundError:
        return 0


def _fsync(path: Path) -> None:
    with path.open("rb+") as f:
        os.fsync(f.fileno())
