"""Obtaining runtime archives: the cache, python-build-standalone, mirrors, explicit archives.

A runtime layer starts from a python-build-standalone ("PBS") style archive: one top
folder (`python/`) holding `bin/`, `lib/`, `include/` and `share/`. `obtain_runtime`
finds one, in this order:

1. an explicit archive named by the spec (local path or URL, with its sha256);
2. the cache: an imported or earlier downloaded runtime of the same implementation,
   version and platform (newest first), so the second use needs no network;
3. `$VENVLAYERS_RUNTIME_MIRROR`: a directory or URL serving PBS file names;
4. a download from the URL in pbs-installer's release table.

Cache layout (`cache_root()/runtimes/`), one entry per archive content::

    <sha256>/<original file name>
    <sha256>/runtime.json        implementation, version, platform, source, origin, ...
    .tmp-*/                      work in progress; renamed to <sha256>/ when verified

An entry appears by one directory rename after its archive was verified, so a partial,
corrupt or interrupted download or import never shows up as a cached runtime.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import _pbs
from ._cache import cache_root
from ._fs import format_json, link_or_copy, remove_tree
from ._hashing import file_sha256
from ._progress import NULL_REPORTER, Reporter
from .errors import RuntimeSourceError
from .platforms import TargetPlatform

__all__ = [
    "MIRROR_ENV",
    "CachedRuntime",
    "PruneResult",
    "RuntimeArchive",
    "add_runtime_archive",
    "import_runtime",
    "list_runtimes",
    "obtain_runtime",
    "parse_runtime_name",
    "prune_runtimes",
    "runtime_python",
    "runtime_python_relpath",
    "runtimes_dir",
    "unpack_runtime",
]

MIRROR_ENV = "VENVLAYERS_RUNTIME_MIRROR"
SOURCES = ("download", "mirror", "archive", "import")
IMPLEMENTATIONS = ("cpython", "pypy")
RECORD_NAME = "runtime.json"
_RECORD_FORMAT = 1
_TMP_PREFIX = ".tmp-"
# leftovers younger than this may belong to a download still running in another process
_TMP_GRACE_SECONDS = 3600.0
_VERSION_RE = re.compile(r"^\d+\.\d+(\.\d+((a|b|rc)\d+)?)?$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class RuntimeArchive:
    """A verified runtime archive on disk and where it came from.

    `sha256` is what lock and layer metadata record to say which exact runtime a layer
    was built against. `origin` is the URL, mirror file, archive path or imported
    prefix the archive was made from.
    """

    path: Path
    sha256: str
    size: int
    implementation: str
    version: str
    platform: TargetPlatform
    source: str
    origin: str = ""

    @property
    def name(self) -> str:
        """`cpython@3.11.7`: how a spec's `python_implementation` names it."""
        return f"{self.implementation}@{self.version}"

    @property
    def filename(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class CachedRuntime:
    """A runtime in the cache, with the cache entry holding it."""

    runtime: RuntimeArchive
    entry: Path
    created: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PruneResult:
    """What `prune_runtimes` removed (or would remove, on a dry run) and kept."""

    removed: tuple[CachedRuntime, ...]
    kept: tuple[CachedRuntime, ...]
    leftovers: tuple[Path, ...] = field(default=())
    freed_bytes: int = 0


def parse_runtime_name(text: str) -> tuple[str, str]:
    """Split `cpython@3.11.7` into implementation and version; ValueError if malformed."""
    implementation, at, version = text.strip().partition("@")
    if not at or implementation not in IMPLEMENTATIONS or not _VERSION_RE.match(version):
        raise ValueError(
            f"runtime names look like 'cpython@3.12.7' or 'pypy@3.10' "
            f"(implementation {' or '.join(IMPLEMENTATIONS)}), not {text!r}"
        )
    return implementation, version


def runtimes_dir() -> Path:
    return cache_root() / "runtimes"


# --------------------------------------------------------------------------- cache


def _read_entry(entry: Path) -> CachedRuntime | None:
    """The cached runtime in `entry`, or None when the entry is broken."""
    try:
        record = json.loads((entry / RECORD_NAME).read_text("utf-8"))
        path = entry / record["filename"]
        runtime = RuntimeArchive(
            path=path,
            sha256=record["sha256"],
            size=int(record["size"]),
            implementation=record["implementation"],
            version=record["version"],
            platform=TargetPlatform(record["platform"]),
            source=record["source"],
            origin=record.get("origin", ""),
        )
        if runtime.sha256 != entry.name or path.stat().st_size != runtime.size:
            return None
        return CachedRuntime(runtime, entry, record["created"], tuple(record.get("notes", ())))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _entries() -> Iterator[Path]:
    root = runtimes_dir()
    if root.is_dir():
        for entry in sorted(root.iterdir()):
            if entry.is_dir() and not entry.name.startswith("."):
                yield entry


def list_runtimes() -> list[CachedRuntime]:
    """Every valid cached runtime, by name, platform, then oldest first."""
    found = [c for c in map(_read_entry, _entries()) if c is not None]
    return sorted(found, key=lambda c: (c.runtime.name, c.runtime.platform, c.created))


def _find_cached(
    implementation: str, version: str, platform: TargetPlatform
) -> RuntimeArchive | None:
    """The newest cached runtime for exactly this implementation, version and platform."""
    matches = [
        c
        for c in list_runtimes()
        if (c.runtime.implementation, c.runtime.version, c.runtime.platform)
        == (implementation, version, platform)
    ]
    return max(matches, key=lambda c: c.created).runtime if matches else None


def _cached_by_sha256(sha256: str) -> CachedRuntime | None:
    entry = runtimes_dir() / sha256
    return _read_entry(entry) if entry.is_dir() else None


@contextlib.contextmanager
def staging_dir() -> Iterator[Path]:
    """A fresh work directory inside the runtimes cache, removed on exit.

    Being inside the cache keeps the final rename on one filesystem (atomic); a
    successful `commit_entry` renames it away first.
    """
    root = runtimes_dir()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=root))
    try:
        yield tmp
    finally:
        if tmp.exists():
            remove_tree(tmp)


def commit_entry(
    stage: Path,
    archive: Path,
    *,
    implementation: str,
    version: str,
    platform: TargetPlatform,
    source: str,
    origin: str,
    sha256: str | None = None,
    notes: Iterable[str] = (),
) -> RuntimeArchive:
    """Turn the staging dir `stage` holding the verified `archive` into a cache entry.

    If an entry with the same content exists (another process got there first), that
    one is kept and returned; `stage` is then left for the caller to remove.
    """
    assert source in SOURCES, source
    digest = sha256 or file_sha256(archive)
    record = {
        "format": _RECORD_FORMAT,
        "implementation": implementation,
        "version": version,
        "platform": str(platform),
        "source": source,
        "origin": origin,
        "filename": archive.name,
        "sha256": digest,
        "size": archive.stat().st_size,
        "created": datetime.now(UTC).isoformat(timespec="microseconds"),
        "notes": list(notes),
    }
    (stage / RECORD_NAME).write_text(format_json(record), "utf-8")
    target = runtimes_dir() / digest
    with contextlib.suppress(OSError):
        # POSIX refuses to rename onto a non-empty directory, Windows onto any: either
        # way an existing entry wins and ours is dropped
        os.rename(stage, target)
    cached = _read_entry(target)
    if cached is None:
        raise RuntimeSourceError(
            f"cannot store {archive.name} in the runtime cache at {target}; remove that "
            "directory (or run `venvlayers runtime prune`) and try again"
        )
    return cached.runtime


def add_runtime_archive(
    archive: Path,
    *,
    implementation: str,
    version: str,
    platform: TargetPlatform,
    source: str = "archive",
    origin: str = "",
    notes: Iterable[str] = (),
) -> RuntimeArchive:
    """Put a verified local archive into the current cache (hard link when possible).

    Used to seed a cache (e.g. a test's `VENVLAYERS_CACHE_DIR`) with an archive that
    already sits elsewhere; after it, `implementation@version` resolves offline.
    """
    sha256 = file_sha256(archive)
    existing = _cached_by_sha256(sha256)
    if existing is not None:
        return existing.runtime
    with staging_dir() as stage:
        link_or_copy(archive, stage / archive.name)
        return commit_entry(
            stage,
            stage / archive.name,
            implementation=implementation,
            version=version,
            platform=platform,
            source=source,
            origin=origin or str(archive),
            sha256=sha256,
            notes=notes,
        )


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
        cached = _find_cached(implementation, full_version, platform)
        if cached is not None:
            return cached
    release = _pbs.find_release(implementation, version, platform)
    cached = _find_cached(implementation, release.version, platform)
    if cached is not None:
        return cached
    if not release.sha256:
        raise RuntimeSourceError(
            f"pbs-installer's table has no sha256 for {release.filename}, so it cannot be "
            f"verified; name it as python_archive with python_archive_sha256, or import a "
            "local install with `venvlayers runtime import PREFIX`"
        )
    existing = _cached_by_sha256(release.sha256)
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
        return f"{mirror.rstrip('/')}/{filename.replace('+', '%2B')}"
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
        existing = _cached_by_sha256(sha256)
        if existing is not None:
            return existing.runtime
        filename = archive.rstrip("/").rpartition("/")[2].replace("%2B", "+") or "runtime.tar.gz"
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
        _pbs.download_file(
            url,
            target,
            sha256=sha256,
            expected=expected,
            advice=advice,
            size=size,
            timeout=timeout,
            reporter=reporter,
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


def import_runtime(
    prefix: Path, *, name: str | None = None, reporter: Reporter = NULL_REPORTER
) -> RuntimeArchive:
    """Pack the CPython install at `prefix` into a relocatable runtime archive in the cache.

    See `venvlayers.runtime_import` for what is kept, fixed and checked.
    """
    # imported late: runtime_import builds on this module's cache functions
    from .runtime_import import import_prefix

    return import_prefix(prefix, name=name, reporter=reporter)


# --------------------------------------------------------------------------- pruning


def prune_runtimes(
    keep: Iterable[str] = (), *, everything: bool = False, dry_run: bool = False
) -> PruneResult:
    """Remove cached runtimes nothing would use any more.

    Kept: for each implementation, version and platform, the newest entry (the one
    `obtain_runtime` answers from the cache), and every entry whose sha256 or name
    (`cpython@3.11.7`) is in `keep`. With `everything`, only `keep` is kept. Always
    removed: entries with a missing or mismatched archive or record, and `.tmp-*`
    work directories older than an hour (interrupted downloads and imports).
    """
    wanted = {k.strip().lower().removeprefix("sha256:") for k in keep}
    cached = list_runtimes()
    newest: dict[tuple[str, TargetPlatform], CachedRuntime] = {}
    for c in cached:  # oldest first, so the last one seen per key is the newest
        newest[(c.runtime.name, c.runtime.platform)] = c
    kept: list[CachedRuntime] = []
    removed: list[CachedRuntime] = []
    for c in cached:
        pinned = c.runtime.sha256 in wanted or c.runtime.name in wanted
        latest = newest[(c.runtime.name, c.runtime.platform)] is c
        (kept if pinned or (latest and not everything) else removed).append(c)

    valid = {c.entry for c in cached}
    leftovers: list[Path] = []
    root = runtimes_dir()
    if root.is_dir():
        now = time.time()
        for item in sorted(root.iterdir()):
            if item.name.startswith(_TMP_PREFIX):
                if now - item.lstat().st_mtime > _TMP_GRACE_SECONDS:
                    leftovers.append(item)
            elif item not in valid:
                leftovers.append(item)

    freed = sum(c.runtime.size for c in removed) + sum(_size(p) for p in leftovers)
    if not dry_run:
        for c in removed:
            remove_tree(c.entry)
        for path in leftovers:
            remove_tree(path)
    return PruneResult(tuple(removed), tuple(kept), tuple(leftovers), freed)


def _size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


# --------------------------------------------------------------------------- unpacking


def unpack_runtime(runtime: RuntimeArchive | Path, dest: Path) -> None:
    """Extract a runtime archive so that its single top folder (`python/`) becomes `dest`.

    `dest` must not exist. Extraction uses Python's `data` filter (no absolute paths,
    no links leaving the tree, no device files) into a temporary sibling that is
    renamed into place, so a failed unpack leaves nothing at `dest`.
    """
    archive = runtime.path if isinstance(runtime, RuntimeArchive) else Path(runtime)
    if dest.exists() or dest.is_symlink():
        raise RuntimeSourceError(f"cannot unpack {archive.name}: {dest} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.unpack-", dir=dest.parent))
    try:
        try:
            _extract(archive, tmp)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raise RuntimeSourceError(
                f"cannot unpack runtime archive {archive}: {exc}; remove it from the cache "
                "(`venvlayers runtime prune`) or fetch it again"
            ) from None
        tops = list(tmp.iterdir())
        if len(tops) != 1 or not tops[0].is_dir() or tops[0].is_symlink():
            names = ", ".join(sorted(p.name for p in tops)) or "nothing"
            raise RuntimeSourceError(
                f"runtime archive {archive} should hold one top folder (python/), not {names}"
            )
        os.rename(tops[0], dest)
    finally:
        remove_tree(tmp)


def _extract(archive: Path, dest: Path) -> None:
    name = archive.name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                parts = Path(info.filename).parts
                if info.filename.startswith(("/", "\\")) or ".." in parts:
                    raise ValueError(f"unsafe member {info.filename!r}")
            zf.extractall(dest)
        return
    if name.endswith((".tar.zst", ".tar.zstd", ".tzst")):
        import zstandard

        with (
            archive.open("rb") as raw,
            zstandard.ZstdDecompressor().stream_reader(raw) as zr,
            tarfile.open(fileobj=zr, mode="r|") as tf,
        ):
            tf.extractall(dest, filter="data")
        return
    with tarfile.open(archive, mode="r:*") as tf:
        tf.extractall(dest, filter="data")


def runtime_python_relpath(platform: TargetPlatform, version: str) -> str:
    """The interpreter inside an unpacked runtime, as a POSIX path relative to it."""
    if platform.os == "win":
        return "python.exe"
    major_minor = ".".join(version.split(".")[:2])
    return f"bin/python{major_minor}"


def runtime_python(dest: Path, platform: TargetPlatform, version: str) -> Path:
    """The interpreter of a runtime unpacked at `dest` (`bin/python3.X` / `python.exe`)."""
    return dest / runtime_python_relpath(platform, version)


def runtime_to_dict(runtime: RuntimeArchive) -> dict[str, Any]:
    """A JSON-ready description of `runtime` (paths as strings)."""
    return {
        "name": runtime.name,
        "implementation": runtime.implementation,
        "version": runtime.version,
        "platform": str(runtime.platform),
        "source": runtime.source,
        "origin": runtime.origin,
        "sha256": runtime.sha256,
        "size": runtime.size,
        "path": str(runtime.path),
    }
