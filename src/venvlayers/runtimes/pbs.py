"""python-build-standalone releases: finding one in pbs-installer's table.

Only pbs-installer's release *table* is used (`get_download_link`); the download is
the project's one HTTP client (`_util.http`), so that we choose where the bytes go (a
temporary file inside our cache), how long a stalled connection may hang, how progress
is shown and how the result is verified.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from ..errors import RuntimeSourceError
from ..platforms import TargetPlatform

__all__ = ["PbsRelease", "find_release", "is_url", "url_filename"]

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
