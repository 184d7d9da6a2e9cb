"""Safe, streaming extraction of layer archives (tar.zst, tar.xz, tar.gz, tar, zip).

Every member passes tarfile's `data` filter (tar) or the same rules (zip) plus our own:
one top folder, plain relative names, no duplicates, no special files, links that
resolve inside the top folder. Symlinks are created only after every file has been
written and every link has been checked against all the others, so nothing is ever
written through a link; an unsafe archive raises before the caller could move the
result into place, and what was extracted so far is removed.
"""

from __future__ import annotations

import calendar
import contextlib
import errno
import gzip
import hashlib
import lzma
import os
import posixpath
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import zstandard

from .._util.fs import remove_tree
from ..errors import ArchiveError
from ..progress import Reporter
from .codecs import (
    READ_BLOCK,
    ForwardReader,
    PrefetchReader,
    decompressing_reader,
    sniff_format,
)
from .common import (
    DIR_MODE,
    ArchiveFormat,
    ManifestEntry,
    extracted_file_mode,
    member_parts,
    resolve_link,
)

__all__ = [
    "ExtractedLayer",
    "extract",
]

_MAX_MEMBER_SIZE = 1 << 40  # no layer holds a 1 TiB file; a header saying so is corrupt
_MAX_LINK_TARGET = 4096
_OPEN_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
# What a damaged compressed stream or archive raises from the standard library and zstandard.
_CORRUPT = (
    gzip.BadGzipFile,  # an OSError, so it must be caught before those
    tarfile.TarError,
    zipfile.BadZipFile,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    zstandard.ZstdError,
    UnicodeDecodeError,
    NotImplementedError,
)


@dataclass(frozen=True)
class ExtractedLayer:
    """The result of `extract_archive`: where the top folder landed and what it holds."""

    path: Path
    root_name: str
    manifest: tuple[ManifestEntry, ...]
    """Regular files and symlinks below `path`, sorted by path."""

    @property
    def total_size(self) -> int:
        return sum(entry.size for entry in self.manifest)


class _Refused(Exception):
    """A member breaks a safety rule; becomes an `ArchiveError` naming the archive."""

    def __init__(self, member: str, reason: str) -> None:
        super().__init__(f"member {member!r}: {reason}")


class _Corrupt(Exception):
    """The archive's structure is damaged in a way the libraries did not notice."""


class _Tree:
    """The extraction target; every file system change of an extraction goes through it."""

    def __init__(
        self, dest: Path, expected_root: str | None, on_file: Callable[[str], None] | None = None
    ) -> None:
        self.dest = dest
        self._on_file = on_file
        self._base = os.fspath(dest) + os.sep  # str paths: Path objects cost per file
        self.expected_root = expected_root
        self.top: str | None = None
        # name -> "dir" (explicit), "implicit" (only a parent), "file", "symlink"
        self._kinds: dict[str, str] = {}
        self._made: set[str] = set()
        self._dir_times: list[tuple[str, int]] = []
        self._symlinks: dict[str, str] = {}  # below the top folder -> target
        self._files: dict[str, ManifestEntry] = {}  # member name -> its entry (for hard links)
        self.manifest: list[ManifestEntry] = []

    # -- names --------------------------------------------------------------------------

    def _claim(self, name: str, kind: str) -> list[str]:
        """Register member `name`; refuse bad names, a second top folder, duplicates."""
        try:
            parts = member_parts(name)
        except ValueError as exc:
            raise _Refused(name, str(exc)) from None
        self._check_top(name, parts, kind)
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            seen = self._kinds.setdefault(parent, "implicit")
            if seen not in ("dir", "implicit"):
                raise _Refused(name, f"{parent!r} is a {seen}, not a directory")
        previous = self._kinds.get(name)
        if previous is not None and not (previous == "implicit" and kind == "dir"):
            raise _Refused(name, "duplicate or conflicting member")
        self._kinds[name] = kind
        return parts

    def _check_top(self, name: str, parts: list[str], kind: str) -> None:
        if len(parts) == 1 and kind != "dir":
            raise _Refused(name, "a top-level entry that is not a folder")
        if self.top is None:
            if self.expected_root is not None and parts[0] != self.expected_root:
                raise _Refused(name, f"top folder is {parts[0]!r}, expected {self.expected_root!r}")
            self.top = parts[0]
        elif parts[0] != self.top:
            raise _Refused(name, f"a second top folder besides {self.top!r}")

    def _inner(self, parts: list[str]) -> str:
        """A member's path below the top folder (what the manifest records)."""
        return "/".join(parts[1:])

    # -- making things ------------------------------------------------------------------

    def _make_parents(self, parts: list[str]) -> None:
        if "/".join(parts[:-1]) in self._made:
            return
        for depth in range(1, len(parts)):
            rel = "/".join(parts[:depth])
            if rel in self._made:
                continue
            path = self._base + rel
            try:
                os.mkdir(path, DIR_MODE)
            except FileExistsError:
                # Possible on case-insensitive file systems; never a link, none exist yet.
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    raise _Refused(rel, "collides with another member") from None
            self._made.add(rel)

    def add_dir(self, name: str, mtime: int) -> None:
        parts = self._claim(name, "dir")
        self._make_parents([*parts, ""])
        self._dir_times.append((name, mtime))

    def add_file(
        self, name: str, size: int, mode: int, mtime: int, read: Callable[[int], bytes]
    ) -> None:
        """Write a regular file from `read(n)`, which must deliver exactly `size` bytes."""
        if not 0 <= size <= _MAX_MEMBER_SIZE:
            raise _Refused(name, f"implausible size {size}")
        parts = self._claim(name, "file")
        self._make_parents(parts)
        digest = hashlib.sha256()
        path = self._base + name
        fd = os.open(path, _OPEN_FLAGS, 0o600)
        try:  # plain os.write: a buffered file object per member costs more than it saves
            remaining = size
            while remaining:
                data = read(min(remaining, READ_BLOCK))
                if not data:
                    raise _Corrupt(f"member {name!r} ends early")
                digest.update(data)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                remaining -= len(data)
            _set_mode_and_time(fd, path, mode, mtime)
        finally:
            os.close(fd)
        entry = ManifestEntry(self._inner(parts), "file", size, digest.hexdigest(), mode)
        self._files[name] = entry
        self.manifest.append(entry)
        if self._on_file is not None:
            self._on_file(entry.path)

    def add_hardlink(self, name: str, target: str) -> None:
        parts = self._claim(name, "file")
        first = self._files.get(target)
        if first is None:
            raise _Refused(name, f"hard link to {target!r}, which is not an earlier regular file")
        self._make_parents(parts)
        os.link(self._base + target, self._base + name)  # a regular file we just wrote
        entry = ManifestEntry(self._inner(parts), "file", first.size, first.sha256, first.mode)
        self._files[name] = entry
        self.manifest.append(entry)
        if self._on_file is not None:
            self._on_file(entry.path)

    def add_symlink(self, name: str, target: str) -> None:
        parts = self._claim(name, "symlink")
        # Created in `finish`, after every file is written: nothing goes through a link.
        self._symlinks[self._inner(parts)] = target

    def finish(self) -> ExtractedLayer:
        """Check and create the symlinks, then fix directory modes and times."""
        if self.top is None:
            raise _Corrupt("it contains no files")
        for inner, target in sorted(self._symlinks.items()):
            try:
                resolve_link(inner, target, self._symlinks)
            except ValueError as exc:
                raise _Refused(f"{self.top}/{inner}", f"symlink: {exc}") from None
        for inner, target in sorted(self._symlinks.items()):
            parts = [self.top, *inner.split("/")]
            self._make_parents(parts)
            os.symlink(target, f"{self._base}{self.top}/{inner}")
            self.manifest.append(ManifestEntry(inner, "symlink", target=target))
        self._make_parents([self.top, ""])
        for name, mtime in sorted(self._dir_times, reverse=True):
            os.chmod(self._base + name, DIR_MODE)
            os.utime(self._base + name, (mtime, mtime))  # no symlink can be in the way
        self.manifest.sort(key=lambda entry: entry.path)
        return ExtractedLayer(self.dest / self.top, self.top, tuple(self.manifest))

    def discard(self) -> None:
        """Remove whatever this extraction created (on failure)."""
        if self.top is not None:
            with contextlib.suppress(OSError):
                remove_tree(self.dest / self.top)


def _set_mode_and_time(fd: int, path: str, mode: int, mtime: int) -> None:
    if os.chmod in os.supports_fd:
        os.chmod(fd, mode)
    else:
        os.chmod(path, mode)
    if os.utime in os.supports_fd:
        os.utime(fd, (mtime, mtime))
    else:
        os.utime(path, (mtime, mtime))


# -- tar -------------------------------------------------------------------------------


def _extract_tar(reader: ForwardReader, tree: _Tree, dest: Path) -> None:
    # Not a `with` block: closing would only close `reader`, which the caller owns.
    fileobj: Any = reader
    tf = tarfile.TarFile(fileobj=fileobj, mode="r", encoding="utf-8", errors="strict")
    member = tf.next()  # the first header, which TarFile() has already read
    if member is None:
        raise _Corrupt("it contains no members")
    while member is not None:
        _extract_tar_member(member, reader, tree, dest)
        member = _next_member(tf, reader)
    _check_end_of_archive(reader, tf.offset)


def _next_member(tf: tarfile.TarFile, reader: ForwardReader) -> tarfile.TarInfo | None:
    """The next header, or None at the end marker.

    `TarFile.next()` also returns None on a damaged or cut-off header, which would make
    a truncated archive look complete; reading headers directly lets that be an error.
    """
    reader.seek(tf.offset)
    block = reader.read(tarfile.BLOCKSIZE)
    reader.seek(tf.offset)
    if len(block) < tarfile.BLOCKSIZE:
        raise _Corrupt(
            "the end-of-archive marker is missing"
            if not block
            else f"it ends inside the header at offset {tf.offset}"
        )
    if block.count(0) == len(block):
        return None
    try:
        return tf.tarinfo.fromtarfile(tf)
    except tarfile.HeaderError as exc:
        raise _Corrupt(f"{exc} at offset {tf.offset}") from None


def _check_end_of_archive(reader: ForwardReader, offset: int) -> None:
    """The tar end marker (two zero blocks) must be there, and nothing but zeros after it."""
    reader.seek(offset)
    marker = reader.read(2 * tarfile.BLOCKSIZE)
    if len(marker) < 2 * tarfile.BLOCKSIZE:
        raise _Corrupt("the end-of-archive marker is missing")
    if marker.count(0) != len(marker):
        raise _Corrupt(f"damaged header at offset {offset}")
    while data := reader.read(READ_BLOCK):
        if data.count(0) != len(data):
            raise _Corrupt("unexpected data after the end of the archive")


def _extract_tar_member(
    member: tarfile.TarInfo, reader: ForwardReader, tree: _Tree, dest: Path
) -> None:
    name = member.name
    try:
        member_parts(name)  # our reasons first: they say more than the filter's
    except ValueError as exc:
        raise _Refused(name, str(exc)) from None
    if member.type in (tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE):
        raise _Refused(name, "a device file or fifo")
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise _Refused(name, f"unsupported member type {member.type!r}")
    if member.issparse():
        raise _Refused(name, "a sparse file")
    reason = data_filter_refusal(member)
    if reason:
        raise _Refused(name, f"rejected by the data filter: {reason}")
    mtime = max(0, int(member.mtime))
    if member.isdir():
        tree.add_dir(name, mtime)
    elif member.issym():
        tree.add_symlink(name, member.linkname)
    elif member.islnk():
        tree.add_hardlink(name, member.linkname)
    else:
        reader.seek(member.offset_data)
        mode = extracted_file_mode(member.mode if member.mode is not None else 0o644)
        tree.add_file(name, member.size, mode, mtime, reader.read)


def data_filter_refusal(member: tarfile.TarInfo) -> str:
    """Why tarfile's `data` filter would refuse `member` here, or "" if it would not.

    The same rules as `tarfile.data_filter`, decided on the names alone: that filter
    resolves every path with `os.path.realpath`, an `lstat` per component of every
    member (238,000 calls and a quarter of the extraction time for torch's 15,000
    files), to see through links already on disk. There are none here: this extractor
    creates symlinks only after every file is written (`_Tree.finish`), so the real
    path of every member is its normalised name. Modes are limited by
    `extracted_file_mode`, as the filter would; owners are never applied. Names were
    checked by `member_parts` (relative, no `..`).
    """
    if member.isdev() or member.isfifo():
        return "a device file or fifo"
    if not (member.issym() or member.islnk()):
        return ""
    link = member.linkname
    if link.startswith("/") or os.path.isabs(link):
        return f"a link to an absolute path ({link!r})"
    base = posixpath.dirname(member.name) if member.issym() else ""
    resolved = posixpath.normpath(posixpath.join(base, link))
    if resolved == ".." or resolved.startswith("../"):
        return f"a link to {link!r} leads outside the destination"
    return ""


# -- zip -------------------------------------------------------------------------------


def _extract_zip(archive: Path, tree: _Tree, advance: Callable[[int], None]) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            _extract_zip_member(zf, info, tree)
            advance(info.compress_size)


def _extract_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, tree: _Tree) -> None:
    name = info.filename
    if info.flag_bits & 0x1:
        raise _Refused(name, "an encrypted member")
    st_mode = info.external_attr >> 16 if info.create_system == 3 else 0
    mtime = calendar.timegm((*info.date_time, 0, 0, 0))
    if name.endswith("/") or stat.S_ISDIR(st_mode):
        tree.add_dir(name.removesuffix("/"), mtime)
    elif stat.S_ISLNK(st_mode):
        if info.file_size > _MAX_LINK_TARGET:
            raise _Refused(name, f"a symlink target of {info.file_size} bytes")
        tree.add_symlink(name, zf.read(info).decode("utf-8"))
    elif st_mode and not stat.S_ISREG(st_mode):
        raise _Refused(name, "a device file, fifo or socket")
    else:
        mode = extracted_file_mode(st_mode & 0o7777 if st_mode else 0o644)
        with zf.open(info) as src:
            tree.add_file(name, info.file_size, mode, mtime, src.read)


# -- entry point -----------------------------------------------------------------------


class _CountingFile:
    """Reports how much of the (compressed) archive has been read."""

    def __init__(self, raw: BinaryIO, advance: Callable[[int], None]) -> None:
        self._raw = raw
        self._advance = advance

    def read(self, size: int = -1, /) -> bytes:
        data = self._raw.read(size)
        self._advance(len(data))
        return data

    def readable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def extract(
    archive: Path,
    dest: Path,
    *,
    expected_root: str | None,
    reporter: Reporter,
    report_key: str,
    report_label: str,
    on_file: Callable[[str], None] | None = None,
) -> ExtractedLayer:
    _check_dest(archive, dest)
    total = _archive_size(archive)
    tree = _Tree(dest, expected_root, on_file)
    reporter.begin(report_key, report_label, total=total)
    ok = False
    try:
        with _translated_errors(archive, dest):
            result = _extract_into(archive, tree, dest, reporter, report_key)
        ok = True
        return result
    finally:
        if not ok:
            tree.discard()
        reporter.end(report_key, "done" if ok else "failed")


def _archive_size(archive: Path) -> int:
    try:
        return archive.stat().st_size
    except OSError as exc:
        raise ArchiveError(f"cannot read archive {archive}: {exc.strerror}") from None


def _check_dest(archive: Path, dest: Path) -> None:
    try:
        if any(dest.iterdir()):
            raise ArchiveError(f"cannot extract {archive.name}: {dest} is not empty")
    except OSError as exc:
        raise ArchiveError(f"cannot extract {archive.name} into {dest}: {exc.strerror}") from None


def _extract_into(
    archive: Path, tree: _Tree, dest: Path, reporter: Reporter, key: str
) -> ExtractedLayer:
    def advance(n: int) -> None:
        reporter.advance(key, n)

    with open(archive, "rb") as raw:
        fmt = sniff_format(raw.read(8))
        raw.seek(0)
        if fmt is ArchiveFormat.ZIP:
            _extract_zip(archive, tree, advance)
            return tree.finish()
        counted = _CountingFile(raw, advance)
        prefetch = PrefetchReader(decompressing_reader(counted, fmt))  # type: ignore[arg-type]
        try:
            _extract_tar(ForwardReader(prefetch), tree, dest)
        finally:
            prefetch.close()
    return tree.finish()


@contextlib.contextmanager
def _translated_errors(archive: Path, dest: Path) -> Iterator[None]:
    """Everything that can go wrong becomes one `ArchiveError` line."""
    try:
        yield
    except ArchiveError:
        raise
    except _Refused as exc:
        raise ArchiveError(f"refusing to extract unsafe archive {archive}: {exc}") from None
    except (_Corrupt, *_CORRUPT) as exc:
        raise ArchiveError(f"archive {archive} is truncated or corrupt: {_describe(exc)}") from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ArchiveError(f"disk full while extracting {archive.name} into {dest}") from None
        where = f" ({exc.filename})" if exc.filename else ""
        raise ArchiveError(
            f"cannot extract {archive.name} into {dest}: {exc.strerror or exc}{where}"
        ) from None


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0] if text else type(exc).__name__
