"""Layer lock files (PEP 751 `pylock.toml`): reading, validating and writing them.

A layer lock lists every package the layer needs on its target platforms. Packages
that a lower layer already provides stay listed, wheels and all (so the lock is
complete and valid PEP 751), but carry the never-true marker clause
`sys_platform == 'from_lower_layer'`, the venvstacks convention that keeps installers
from installing them twice.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import tomlkit
from packaging.markers import InvalidMarker, Marker
from packaging.pylock import Pylock, PylockValidationError
from packaging.tags import Tag
from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from ..errors import LockError

__all__ = [
    "SHARED_CLAUSE",
    "SHARED_MARKER_VALUE",
    "LockedPackage",
    "LockedWheel",
    "parse_pylock",
    "parse_pylock_data",
    "read_pylock",
    "render_pylock",
    "source_only",
    "wheel_filename",
    "with_shared",
]

SHARED_MARKER_VALUE = "from_lower_layer"
SHARED_CLAUSE = f"sys_platform == '{SHARED_MARKER_VALUE}'"


@dataclass(frozen=True)
class LockedWheel:
    """One wheel file of a locked package."""

    filename: str
    sha256: str
    url: str | None = None
    path: str | None = None  # POSIX, relative to the lock file's directory
    size: int | None = None
    upload_time: datetime | None = None

    @property
    def tags(self) -> frozenset[Tag]:
        return parse_wheel_filename(self.filename)[3]

    def to_toml(self) -> Any:
        entry = tomlkit.inline_table()
        if self.url is not None:
            entry["url"] = self.url
        if self.path is not None:
            entry["path"] = self.path
        if self.upload_time is not None:
            entry["upload-time"] = self.upload_time
        if self.size is not None:
            entry["size"] = self.size
        hashes = tomlkit.inline_table()
        hashes["sha256"] = self.sha256
        entry["hashes"] = hashes
        return entry


@dataclass(frozen=True)
class LockedPackage:
    """A pinned distribution in a layer lock."""

    name: NormalizedName
    version: Version
    marker: Marker | None = None
    wheels: tuple[LockedWheel, ...] = ()
    index: str | None = None
    shared: bool = False  # provided by a lower layer, not installed by this one
    requires_python: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # other keys, kept verbatim

    @property
    def pin(self) -> str:
        """`name==version ; marker`, the form used for constraints and summaries."""
        text = f"{self.name}=={self.version}"
        return f"{text} ; {_marker_text(self.marker)}" if self.marker else text

    def to_toml(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": self.name, "version": str(self.version)}
        if self.shared:
            marker = f"({_marker_text(self.marker)}) and {SHARED_CLAUSE}" if self.marker else None
            entry["marker"] = marker or SHARED_CLAUSE
        elif self.marker is not None:
            entry["marker"] = _marker_text(self.marker)
        if self.requires_python:
            entry["requires-python"] = self.requires_python
        if self.index:
            entry["index"] = self.index
        entry.update(self.extra)
        wheels = tomlkit.array()
        wheels.extend(wheel.to_toml() for wheel in self.wheels)
        if len(self.wheels) > 1:
            wheels.multiline(True)
        entry["wheels"] = wheels
        return entry


def _marker_text(marker: Marker | None) -> str:
    # single quotes keep TOML strings free of escapes
    return str(marker).replace('"', "'") if marker is not None else ""


def _split_shared(marker_text: str) -> tuple[Marker | None, bool]:
    """Parse a marker, separating the `from_lower_layer` clause venvstacks uses."""
    if SHARED_MARKER_VALUE not in marker_text:
        return Marker(marker_text), False
    if marker_text.replace('"', "'") == SHARED_CLAUSE:
        return None, True
    text = marker_text.replace('"', "'")
    suffix = f" and {SHARED_CLAUSE}"
    if not text.endswith(suffix):
        raise InvalidMarker(f"unexpected use of {SHARED_MARKER_VALUE!r} in {marker_text!r}")
    inner = text.removesuffix(suffix)
    if inner.startswith("(") and inner.endswith(")"):
        inner = inner[1:-1]
    return Marker(inner), True


def wheel_filename(entry: Mapping[str, Any]) -> str:
    """The file name of a pylock wheel entry (`name`, else the last part of path/url)."""
    name = entry.get("name")
    if isinstance(name, str) and name:
        return name
    location = entry.get("path") or urlsplit(str(entry.get("url", ""))).path
    return unquote(PurePosixPath(str(location).replace("\\", "/")).name)


def parse_pylock(text: str, origin: str) -> list[LockedPackage]:
    """Read and validate a lock; a broken file is a `LockError` naming it and the fix."""
    fix = "relock with `venvlayers lock --reset-lock <layer>`"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LockError(f"{origin}: invalid TOML ({exc}); {fix}") from None
    return parse_pylock_data(data, origin)


def parse_pylock_data(data: Mapping[str, Any], origin: str) -> list[LockedPackage]:
    """Validate a parsed lock document and return its packages.

    Strict PEP 751 validation, except for one venvstacks convention: a package that a
    lower layer provides may be listed by name, version and the `from_lower_layer`
    marker alone, without wheels (venvstacks 0.8 writes them so). Such an entry
    installs nothing here, so it needs no source; it must still name a valid version.
    """
    fix = "relock with `venvlayers lock --reset-lock <layer>`"
    raw_packages = data.get("packages", [])
    try:
        Pylock.from_dict({**data, "packages": [p for p in raw_packages if not _bare_shared(p)]})
    except PylockValidationError as exc:
        raise LockError(f"{origin}: not a valid PEP 751 lock ({exc}); {fix}") from None
    packages: list[LockedPackage] = []
    for i, raw in enumerate(data.get("packages", [])):
        try:
            packages.append(_package_from_toml(raw))
        except (InvalidMarker, InvalidVersion, InvalidWheelFilename, KeyError, TypeError) as exc:
            raise LockError(f"{origin}: packages[{i}] is invalid ({exc}); {fix}") from None
    return packages


def _bare_shared(raw: Any) -> bool:
    """A venvstacks entry for a package provided below: no wheels, no other source."""
    if not isinstance(raw, Mapping) or SHARED_MARKER_VALUE not in str(raw.get("marker", "")):
        return False
    return not any(raw.get(key) for key in ("wheels", "sdist", "archive", "directory", "vcs"))


def read_pylock(path: Path) -> list[LockedPackage]:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise LockError(f"{path}: lock file is missing; run `venvlayers lock`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LockError(f"{path}: cannot read lock file ({exc})") from None
    return parse_pylock(text, str(path))


_KNOWN_PACKAGE_KEYS = {
    "name",
    "version",
    "marker",
    "wheels",
    "index",
    "requires-python",
    "sdist",
    "archive",
    "directory",
    "vcs",
}


def _package_from_toml(raw: Mapping[str, Any]) -> LockedPackage:
    marker_text = raw.get("marker")
    marker, shared = _split_shared(marker_text) if marker_text else (None, False)
    wheels = tuple(
        LockedWheel(
            filename=wheel_filename(w),
            sha256=str(w["hashes"]["sha256"]).lower(),
            url=w.get("url"),
            path=w.get("path"),
            size=w.get("size"),
            upload_time=w.get("upload-time"),
        )
        for w in raw.get("wheels", ())
    )
    for wheel in wheels:
        parse_wheel_filename(wheel.filename)  # validates the name early
    extra = {k: v for k, v in raw.items() if k not in _KNOWN_PACKAGE_KEYS}
    return LockedPackage(
        name=canonicalize_name(raw["name"]),
        version=Version(str(raw["version"])),
        marker=marker,
        wheels=wheels,
        index=raw.get("index"),
        shared=shared,
        requires_python=raw.get("requires-python"),
        extra=extra,
    )


def source_only(raw: Mapping[str, Any]) -> bool:
    """A package uv could only take from an sdist, VCS or local directory."""
    return not raw.get("wheels")


def render_pylock(
    packages: Sequence[LockedPackage],
    *,
    title: str,
    requires_python: str,
    environments: Iterable[str],
) -> str:
    """The lock file text: a short header, then a deterministic PEP 751 document."""
    doc = tomlkit.document()
    doc.add(tomlkit.comment(f"Locked requirements for {title} (DO NOT EDIT)"))
    doc.add(tomlkit.comment("Generated by venvlayers; update with `venvlayers lock`"))
    doc["lock-version"] = "1.0"
    envs = tomlkit.array()
    envs.extend(environments)
    envs.multiline(True)
    doc["environments"] = envs
    doc["requires-python"] = requires_python
    doc["created-by"] = "venvlayers"
    tables = tomlkit.aot()
    for package in sorted(packages, key=lambda p: (p.name, p.version, _marker_text(p.marker))):
        tables.append(tomlkit.item(package.to_toml()))
    doc["packages"] = tables
    return tomlkit.dumps(doc)


def with_shared(package: LockedPackage) -> LockedPackage:
    return replace(package, shared=True)
