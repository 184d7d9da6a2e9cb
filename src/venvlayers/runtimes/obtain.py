"""Obtaining runtime archives: the cache, python-build-standalone, mirrors, explicit archives.

A runtime layer starts from a python-build-standalone ("PBS") style archive: one top
folder (`python/`) holding `bin/`, `lib/`, `include/` and `share/`. `obtain_runtime`
finds one, in this order:

1. an explicit archive named by the spec (local path or URL, with its sha256);
2. the cache: an imported or earlier downloaded runtime of the same implementation,
   version and platform (newest first), so the second use needs no network;
3. `$VENVLAYERS_RUNTIME_MIRROR`: a directory or URL serving PBS file names;
4. a download from the URL in pbs-installer's release table.

Whatever is fetched lands, verified, in the cache (`_runtime_cache`) keyed by sha256.
"""

from __future__ import annotations

import os
import re
import shutil
import urllib.parse
from pathlib import Path
from urllib.request import url2pathname

from .._util.hashing import file_sha256
from .._util.http import HttpClient
from ..errors import RuntimeSourceError
from ..platforms import TargetPlatform
from ..progress import NULL_REPORTER, Reporter
from . import pbs as _pbs
from .cache import (
    CachedRuntime,
    PruneResult,
    RuntimeArchive,
    add_runtime_archive,
    cached_by_sha256,
    commit_entry,
    find_cached,
    list_runtimes,
    prune_runtimes,
    runtime_to_dict,
    runtimes_dir,
    staging_dir,
)
from .tree import parse_runtime_name

__all__ = [
    "MIRROR_ENV",
    "CachedRuntime",
    "PruneResult",
    "RuntimeArchive",
    "add_runtime_archive",
    "list_runtimes",
    "obtain_runtime",
    "prune_runtimes",
    "runtime_to_dict",
    "runtimes_dir",
]

MIRROR_ENV = "VENVLAYERS_RUNTIME_MIRROR"
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


# --------------------------------------------------------------------------- obtaining


def _normalise_sha256(value: str, what: str) -> str:
    digest = value.strip().lower().removeprefix("sha256:")
    if not _SHA256_RE.match(digest):
        raise RuntimeSourceError(f"{what} must be 64 hex digits (a sha256), not {value!r}")
    return digest


def obtain_runtime(
    implementation: str,
    version: str,
    platform: TargetPlatform,
    *,
    archive: str | None = None,
    archive_sha256: str | None = None,
    spec_dir: Path | None = None,
    reporter: Reporter = NULL_REPORTER,
    timeout: float | None = None,
) -> RuntimeArchive:
    """A verified runtime archive for `implementation@version` on `platform`.

    `archive`/`archive_sha256` are a spec's `python_archive`/`python_archive_sha256`
    (a path relative to `spec_dir`, or a URL). A partial `version` (`3.12`) means the
    newest release in pbs-installer's table; the cache only answers full versions, so
    name the exact version (`cpython@3.11.7`) to use an imported runtime.
    `timeout` bounds each network wait (default `$VENVLAYERS_DOWNLOAD_TIMEOUT` or 60 s).
    """
    name = f"{implementation}@{version}"
    try:
        parse_runtime_name(name)
    except ValueError as exc:
        raise RuntimeSourceError(str(exc)) from None
    if archive is not None:
        if not archive_sha256:
            raise RuntimeSourceError(
                f"runtime {name}: python_archive {archive!r} needs python_archive_sha256 "
                "(the sha256 of that file, e.g. from `sha256sum`)"
            )
        sha256 = _normalise_sha256(archive_sha256, f"runtime {name}: python_archive_sha256")
        return _explicit_archive(
            implementation, version, platform, archive, sha256, spec_dir, reporter, timeout
        )

    full_version = version if version.count(".") >= 2 else None
    if full_version is not None:
        cached = find_cached(implementation, full_version, platform)
        if cached is not None:
            return cached
    release = _pbs.find_release(implementation, version, platform)
    cached = find_cached(implementation, release.version, platform)
    if cached is not None:
        return cached
    if not release.sha256:
        raise RuntimeSourceError(
            f"pbs-installer's table has no sha256 for {release.filename}, so it cannot be "
            f"verified; name it as python_archive with python_archive_sha256, or import a "
            "local install with `venvlayers runtime import PREFIX`"
        )
    existing = cached_by_sha256(release.sha256)
    if existing is not None:
        return existing.runtime

    mirror = os.environ.get(MIRROR_ENV, "").strip()
    expected = f"{release.filename} with sha256 {release.sha256}"
    if mirror:
        url = _mirror_url(mirror, release.filename)
        advice = (
            f"put {release.filename} into the mirror {mirror}, or unset {MIRROR_ENV} to "
            "download it from python-build-standalone"
        )
        source = "mirror"
    else:
        url = release.url
        advice = (
            f"set {MIRROR_ENV} to a directory holding {release.filename}, or run "
            "`venvlayers runtime import PREFIX` on a local CPython install"
        )
        source = "download"
    return _fetch_into_cache(
        url,
        release.filename,
        release.sha256,
        implementation=release.implementation,
        version=release.version,
        platform=platform,
        source=source,
        expected=expected,
        advice=advice,
        size=release.size,
        reporter=reporter,
        timeout=timeout,
    )


def _mirror_url(mirror: str, filename: str) -> str:
    if _pbs.is_url(mirror):
        return f"{mirror.rstrip('/')}/{urllib.parse.quote(filename)}"
    return (Path(mirror).expanduser().absolute() / filename).as_uri()


def _explicit_archive(
    implementation: str,
    version: str,
    platform: TargetPlatform,
    archive: str,
    sha256: str,
    spec_dir: Path | None,
    reporter: Reporter,
    timeout: float | None,
) -> RuntimeArchive:
    name = f"{implementation}@{version}"
    if _pbs.is_url(archive):
        existing = cached_by_sha256(sha256)
        if existing is not None:
            return existing.runtime
        filename = _pbs.url_filename(archive)
        return _fetch_into_cache(
            archive,
            filename,
            sha256,
            implementation=implementation,
            version=version,
            platform=platform,
            source="archive",
            expected=f"python_archive of {name} with sha256 {sha256}",
            advice="check python_archive and python_archive_sha256 in the spec",
            reporter=reporter,
            timeout=timeout,
        )
    path = Path(archive).expanduser()
    if not path.is_absolute():
        path = (spec_dir or Path.cwd()) / path
    path = path.absolute()
    if not path.is_file():
        raise RuntimeSourceError(
            f"runtime {name}: python_archive {path} does not exist (expected a file with "
            f"sha256 {sha256}); fix the path in the spec (relative paths start at the spec's "
            "directory)"
        )
    actual = file_sha256(path)
    if actual != sha256:
        raise RuntimeSourceError(
            f"runtime {name}: python_archive {path} has sha256 {actual}, but the spec expects "
            f"{sha256}; update python_archive_sha256 or restore the expected file"
        )
    return RuntimeArchive(
        path=path,
        sha256=sha256,
        size=path.stat().st_size,
        implementation=implementation,
        version=version,
        platform=platform,
        source="archive",
        origin=str(path),
    )


def _fetch_into_cache(
    url: str,
    filename: str,
    sha256: str,
    *,
    implementation: str,
    version: str,
    platform: TargetPlatform,
    source: str,
    expected: str,
    advice: str,
    reporter: Reporter,
    timeout: float | None,
    size: int | None = None,
) -> RuntimeArchive:
    with staging_dir() as stage:
        target = stage / filename
        if url.startswith("file:"):  # a mirror directory, or a python_archive file URL
            _copy_local(url, target, sha256, f"expected {expected}; {advice}")
        else:
            # plain http is fine here: the sha256 is known before the first byte arrives;
            # few retries, since the user waits and has other sources (mirror, import)
            with HttpClient(
                error=RuntimeSourceError, timeout=timeout, retries=1, insecure=True
            ) as client:
                client.download(
                    url,
                    target,
                    sha256=sha256,
                    size=size,
                    resume=False,
                    reporter=reporter,
                    hint=f"expected {expected}; {advice}",
                )
        return commit_entry(
            stage,
            target,
            implementation=implementation,
            version=version,
            platform=platform,
            source=source,
            origin=url,
            sha256=sha256,
        )


def _copy_local(url: str, target: Path, sha256: str, hint: str) -> None:
    path = Path(url2pathname(urllib.parse.urlsplit(url).path))
    try:
        shutil.copyfile(path, target)
    except FileNotFoundError:
        raise RuntimeSourceError(f"cannot fetch {path}: no such file ({hint})") from None
    except OSError as exc:
        raise RuntimeSourceError(f"cannot read {path}: {exc.strerror} ({hint})") from None
    actual = file_sha256(target)
    if actual != sha256:
        raise RuntimeSourceError(f"{path} does not match its sha256 (got {actual}) ({hint})")
