"""Values and path rules shared by archive writing and safe extraction.

The writer and the reader apply the same containment rule to links, so that an archive
we publish is never one our own deploy refuses.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from ..errors import ArchiveError

__all__ = [
    "DEFAULT_FORMAT",
    "DIR_MODE",
    "EXEC_MODE",
    "FILE_MODE",
    "SYMLINK_MODE",
    "ArchiveFormat",
    "ArchiveInfo",
    "EntryKind",
    "ManifestEntry",
    "describe_file_type",
    "extracted_file_mode",
    "member_parts",
    "normalised_file_mode",
    "resolve_link",
]


class ArchiveFormat(StrEnum):
    """A published layer archive's format; the value is its file name suffix."""

    TAR_ZST = "tar.zst"
    TAR_XZ = "tar.xz"
    TAR_GZ = "tar.gz"
    ZIP = "zip"

    @property
    def suffix(self) -> str:
        return f".{self.value}"

    @classmethod
    def from_path(cls, path: Path) -> ArchiveFormat | None:
        """The format a file name says it has (`None` when the suffix is not ours)."""
        name = path.name.lower()
        for fmt in cls:
            if name.endswith(fmt.suffix):
                return fmt
        if name.endswith(".tzst"):
            return cls.TAR_ZST
        if name.endswith(".txz"):
            return cls.TAR_XZ
        if name.endswith(".tgz"):
            return cls.TAR_GZ
        return None


DEFAULT_FORMAT = ArchiveFormat.TAR_ZST
"""Chosen by measurement (bench/archive_formats.py): see `archives.default_level`."""


@dataclass(frozen=True)
class ArchiveInfo:
    """A finished archive: where it is, its size in bytes and its sha256 (hex, no prefix)."""

    path: Path
    size: int
    sha256: str


EntryKind = Literal["file", "symlink"]


@dataclass(frozen=True)
class ManifestEntry:
    """One installed file or symlink, relative to its layer directory.

    Regular files carry size, sha256 (hex) and permission bits; symlinks their target.
    """

    path: str
    kind: EntryKind
    size: int = 0
    sha256: str = ""
    mode: int = 0
    target: str = ""

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "symlink":
            return {"path": self.path, "kind": self.kind, "target": self.target}
        return {
            "path": self.path,
            "kind": self.kind,
            "size": self.size,
            "sha256": self.sha256,
            "mode": f"{self.mode:04o}",
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ManifestEntry:
        """Read what `to_dict` wrote; a malformed record is an `ArchiveError`."""
        try:
            kind = data["kind"]
            if kind == "symlink":
                return cls(path=str(data["path"]), kind="symlink", target=str(data["target"]))
            if kind == "file":
                return cls(
                    path=str(data["path"]),
                    kind="file",
                    size=int(data["size"]),
                    sha256=str(data["sha256"]),
                    mode=int(str(data["mode"]), 8),
                )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchiveError(f"malformed manifest entry {dict(data)!r}: {exc}") from None
        raise ArchiveError(f"malformed manifest entry {dict(data)!r}: unknown kind {kind!r}")


# Modes stored in archives: anything executable stays executable, nothing else varies.
DIR_MODE = 0o755
EXEC_MODE = 0o755
FILE_MODE = 0o644
SYMLINK_MODE = 0o777


def normalised_file_mode(st_mode: int) -> int:
    return EXEC_MODE if st_mode & 0o111 else FILE_MODE


def extracted_file_mode(mode: int) -> int:
    """The mode a regular file gets on extraction (what tarfile's `data` filter allows)."""
    mode &= 0o755
    if not mode & 0o100:
        mode &= ~0o111
    return mode | 0o600


def describe_file_type(st_mode: int) -> str:
    if stat.S_ISSOCK(st_mode):
        return "a socket"
    if stat.S_ISFIFO(st_mode):
        return "a fifo"
    if stat.S_ISCHR(st_mode) or stat.S_ISBLK(st_mode):
        return "a device file"
    return "not a regular file, directory or symlink"


_DRIVE = re.compile(r"^[A-Za-z]:")
_MAX_LINK_HOPS = 40


def member_parts(name: str) -> list[str]:
    """Split an archive member name into path components, or raise `ValueError(reason)`.

    Stricter than tar itself: names must be plain relative POSIX paths that mean the
    same thing on every platform we deploy to.
    """
    if not name:
        raise ValueError("empty member name")
    if "\x00" in name:
        raise ValueError("NUL character in member name")
    if name.startswith("/") or _DRIVE.match(name):
        raise ValueError("absolute path")
    if "\\" in name:
        raise ValueError("backslash in member name")
    parts = name.split("/")
    if ".." in parts:
        raise ValueError("'..' in member name")
    if any(part in ("", ".") for part in parts):
        raise ValueError("empty or '.' path component")
    return parts


def resolve_link(link: str, target: str, symlinks: Mapping[str, str]) -> str:
    """The tree-relative path symlink `link` ends up at, or raise `ValueError(reason)`.

    `link` is relative to the tree root and `symlinks` maps every symlink of the tree
    to its target, so that a chain of links is followed the way the OS will follow it
    (a purely textual check is fooled by `a/link/..` where `link` is itself a link).
    Components that are not links are taken as directories; the result may not exist.
    """
    if not target:
        raise ValueError("empty link target")
    if "\x00" in target:
        raise ValueError("NUL character in link target")
    if target.startswith("/") or _DRIVE.match(target) or "\\" in target:
        raise ValueError(f"absolute link target {target!r}")
    parts = link.split("/")[:-1]
    pending = list(reversed(target.split("/")))
    hops = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise ValueError(f"link target {target!r} points outside the tree")
            parts.pop()
            continue
        parts.append(part)
        inner = symlinks.get("/".join(parts))
        if inner is None:
            continue
        hops += 1
        if hops > _MAX_LINK_HOPS:
            raise ValueError(f"too many levels of symbolic links resolving {target!r}")
        if inner.startswith("/") or _DRIVE.match(inner) or "\\" in inner:
            raise ValueError(f"link target {target!r} passes through an absolute link")
        parts.pop()
        pending.extend(reversed(inner.split("/")))
    return "/".join(parts)
