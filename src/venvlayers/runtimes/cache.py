"""The runtime cache: verified archives keyed by sha256, listed, added and pruned.

Layout of `cache_root()/runtimes/`, one entry per archive content::

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
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .._util.cache import cache_root
from .._util.fs import format_json, link_or_copy, remove_tree
from .._util.hashing import file_sha256
from ..errors import RuntimeSourceError
from ..platforms import TargetPlatform

__all__ = [
    "CachedRuntime",
    "PruneResult",
    "RuntimeArchive",
    "add_runtime_archive",
    "cached_by_sha256",
    "commit_entry",
    "find_cached",
    "list_runtimes",
    "prune_runtimes",
    "runtime_to_dict",
    "runtimes_dir",
    "staging_dir",
]

SOURCES = ("download", "mirror", "archive", "import")
RECORD_NAME = "runtime.json"
_RECORD_FORMAT = 1
_TMP_PREFIX = ".tmp-"
# leftovers younger than this may belong to a download still running in another process
_TMP_GRACE_SECONDS = 3600.0


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


def runtimes_dir() -> Path:
    return cache_root() / "runtimes"


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


def find_cached(
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


def cached_by_sha256(sha256: str) -> CachedRuntime | None:
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
    existing = cached_by_sha256(sha256)
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
