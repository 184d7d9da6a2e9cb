"""python-build-standalone releases: finding one in pbs-installer's table, fetching a file.

Only pbs-installer's release *table* is used (`get_download_link`); the download is our
own so that we choose where the bytes go (a temporary file inside our cache), how long a
stalled connection may hang, how progress is shown and how the result is verified.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import RuntimeSourceError, VenvLayersError
from ..platforms import TargetPlatform
from ..progress import NULL_REPORTER, Reporter

__all__ = ["PbsRelease", "download_file", "find_release", "is_url", "url_filename"]

DEFAULT_TIMEOUT = 60.0
TIMEOUT_ENV = "VENVLAYERS_DOWNLOAD_TIMEOUT"
_CHUNK = 1 << 16

# pbs-installer names operating systems its own way
_PBS_OS = {"linux": "linux", "macosx": "macos", "win": "windows"}


@dataclass(frozen=True)
class PbsRelease:
    """One downloadable runtime archive from the release table.

    `size` is None when the table does not record it (pbs-installer's does not): the
    size is then known, and checked against Content-Length, only while downloading.
    """

    implementation: str
    version: str
    platform: TargetPlatform
    url: str
    filename: str
    sha256: str | None
    size: int | None = None


def _download_link(
    implementation: str, version: str, os_name: str, arch: str
) -> tuple[str, str, str | None]:
    """(full version, url, sha256) from pbs-installer's table; ValueError if unknown.

    The one place pbs-installer is touched, so tests can point it at a local server.
    """
    from pbs_installer import get_download_link

    found, (url, sha256) = get_download_link(
        version,
        arch=arch,
        platform=os_name,
        implementation=implementation,  # type: ignore[arg-type]  # checked by the caller
        build_dir=False,
    )
    return f"{found.major}.{found.minor}.{found.micro}", url, sha256


def find_release(implementation: str, version: str, platform: TargetPlatform) -> PbsRelease:
    """The `install_only` archive of `implementation@version` for `platform`.

    A partial version (`3.12`) means the newest release the table knows.
    """
    try:
        full, url, sha256 = _download_link(
            implementation, version, _PBS_OS[platform.os], platform.cpu
        )
    except ValueError:
        raise RuntimeSourceError(
            f"no python-build-standalone release of {implementation}@{version} for {platform} "
            "is listed in pbs-installer's table; upgrade pbs-installer, name a python_archive "
            "with its sha256, or run `venvlayers runtime import PREFIX` on a local install"
        ) from None
    filename = url_filename(url)
    # without install_only pbs-installer falls back to a "full" build whose layout
    # (python/install/...) is not the one a runtime layer is made from
    if implementation == "cpython" and "install_only" not in filename:
        raise RuntimeSourceError(
            f"pbs-installer lists only a full build of {implementation}@{full} for {platform} "
            f"({filename}), not an install_only archive; pick another version or name a "
            "python_archive with its sha256"
        )
    return PbsRelease(implementation, full, platform, url, filename, sha256)


def url_filename(url: str, default: str = "runtime-archive") -> str:
    """The file name a URL ends in, safe to create in a directory of ours."""
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rpartition("/")[2])
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        return default
    return name


def is_url(text: str) -> bool:
    return urllib.parse.urlsplit(text).scheme in ("http", "https", "file")


def download_timeout(timeout: float | None = None) -> float:
    """`timeout`, else `$VENVLAYERS_DOWNLOAD_TIMEOUT`, else 60 seconds."""
    if timeout is not None:
        return timeout
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        return float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        raise RuntimeSourceError(
            f"{TIMEOUT_ENV}={raw!r} is not a number of seconds; set it to e.g. 60"
        ) from None


def download_file(
    url: str,
    dest: Path,
    *,
    sha256: str,
    expected: str,
    advice: str,
    size: int | None = None,
    timeout: float | None = None,
    reporter: Reporter = NULL_REPORTER,
    error: type[VenvLayersError] = RuntimeSourceError,
) -> int:
    """Stream `url` into the new file `dest`, verifying size and sha256; return the size.

    `expected` names what should arrive (file name and hash) and `advice` what the user
    can do instead; both end every error message. On failure `dest` may hold partial
    data: the caller downloads into a temporary directory it removes.
    """
    seconds = download_timeout(timeout)
    tail = f"(expected {expected}); {advice}"
    request = urllib.request.Request(url, headers={"User-Agent": "venvlayers"})
    try:
        response = urllib.request.urlopen(request, timeout=seconds)
    except urllib.error.HTTPError as exc:
        raise error(f"cannot download {url}: HTTP {exc.code} {exc.reason} {tail}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise error(f"cannot download {url}: no response within {seconds:g}s {tail}") from None
        raise error(f"cannot download {url}: {_reason(exc.reason)} {tail}") from None
    except TimeoutError:
        raise error(f"cannot download {url}: no response within {seconds:g}s {tail}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise error(f"cannot download {url}: {_reason(exc)} {tail}") from None

    key = f"download:{dest.name}"
    with response:
        header = response.headers.get("Content-Length")
        announced = int(header) if header and header.isdigit() else None
        reporter.begin(key, f"download {dest.name}", total=announced or size)
        digest = hashlib.sha256()
        received = 0
        status = "failed"
        try:
            with dest.open("xb") as f:
                # read1: whatever has arrived, so progress and byte counts stay live
                while chunk := response.read1(_CHUNK):
                    f.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    reporter.advance(key, len(chunk))
            status = "done"
        except TimeoutError:
            raise error(
                f"download of {url} stalled: no data for {seconds:g}s after {received} bytes {tail}"
            ) from None
        except http.client.IncompleteRead:
            raise error(
                f"download of {url} was cut off after {received} of {announced} bytes {tail}"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise error(
                f"download of {url} failed after {received} bytes: {_reason(exc)} {tail}"
            ) from None
        finally:
            reporter.end(key, status)

    for want, what in ((announced, "the server announced"), (size, "expected")):
        if want is not None and received != want:
            raise error(
                f"download of {url} is truncated or oversized: {received} bytes, {what} {want} "
                f"{tail}"
            )
    actual = digest.hexdigest()
    if actual != sha256:
        raise error(
            f"download of {url} does not match its sha256 (got {actual}, {received} bytes) {tail}"
        )
    return received


def _reason(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or reason.__class__.__name__
