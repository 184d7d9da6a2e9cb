"""Turning a directory tree into a reproducible tar or zip byte stream.

Everything that could differ between two builds of the same content (directory order,
owners, umask, mtimes newer than the clamp, the build directory's own name) is
normalised away here; compression happens downstream in `_archive_codecs`.
"""

from __future__ import annotations

import os
import stat
import struct
import tarfile
import time
import zlib
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import ArchiveError
from .codecs import DeflatePieces, OrderedOutput
from .common import (
    DIR_MODE,
    SYMLINK_MODE,
    describe_file_type,
    normalised_file_mode,
    resolve_link,
)

__all__ = [
    "SourceEntry",
    "SourceKind",
    "ZipStreamWriter",
    "scan_tree",
    "tar_header",
    "write_tar",
]

SourceKind = Literal["dir", "file", "symlink", "hardlink"]

_READ_SIZE = 1 << 20
_DEFLATE_WINDOW = 32 * 1024


@dataclass(frozen=True)
class SourceEntry:
    """One thing to archive. `rel` is a POSIX path below the source dir ("" for itself).

    `link` is a symlink's target, or for a hard link the `rel` of its first occurrence.
    """

    rel: str
    kind: SourceKind
    mode: int
    mtime: int
    size: int = 0
    link: str = ""


def scan_tree(
    source_dir: Path, *, clamp_mtime: int, exclude: Callable[[str], bool] | None
) -> list[SourceEntry]:
    """Every entry below `source_dir` that `exclude` keeps, sorted by path.

    Refuses what cannot be published safely: special files, names that are not UTF-8,
    and symlinks that are absolute or lead outside the tree.
    """
    try:
        root_stat = os.stat(source_dir)
    except OSError as exc:
        raise ArchiveError(f"cannot archive {source_dir}: {exc.strerror}") from None
    if not stat.S_ISDIR(root_stat.st_mode):
        raise ArchiveError(f"cannot archive {source_dir}: not a directory")
    found: list[tuple[str, os.stat_result, str]] = []
    _walk(source_dir, "", exclude, found)
    found.sort(key=lambda item: item[0])
    entries = [SourceEntry("", "dir", DIR_MODE, _clamp(root_stat.st_mtime, clamp_mtime))]
    first_of_inode: dict[tuple[int, int], str] = {}
    for rel, st, target in found:
        entries.append(_entry(rel, st, target, clamp_mtime, first_of_inode))
    _check_links(source_dir, entries)
    return entries


def _walk(
    directory: Path,
    prefix: str,
    exclude: Callable[[str], bool] | None,
    found: list[tuple[str, os.stat_result, str]],
) -> None:
    try:
        with os.scandir(directory) as it:
            children = list(it)
    except OSError as exc:
        raise ArchiveError(f"cannot archive {directory}: {exc.strerror}") from None
    for child in children:
        _check_utf8(directory, child.name)
        rel = f"{prefix}{child.name}"
        if exclude is not None and exclude(rel):
            continue
        try:
            st = child.stat(follow_symlinks=False)
            target = os.readlink(child.path) if stat.S_ISLNK(st.st_mode) else ""
        except OSError as exc:
            raise ArchiveError(f"cannot archive {child.path}: {exc.strerror}") from None
        found.append((rel, st, target))
        if stat.S_ISDIR(st.st_mode):
            _walk(Path(child.path), f"{rel}/", exclude, found)


def _check_utf8(directory: Path, name: str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ArchiveError(
            f"cannot archive {directory / name!s}: the file name is not valid UTF-8"
        ) from None


def _clamp(mtime: float, clamp_mtime: int) -> int:
    return max(0, min(int(mtime), clamp_mtime))


def _entry(
    rel: str,
    st: os.stat_result,
    target: str,
    clamp_mtime: int,
    first_of_inode: dict[tuple[int, int], str],
) -> SourceEntry:
    mtime = _clamp(st.st_mtime, clamp_mtime)
    if stat.S_ISDIR(st.st_mode):
        return SourceEntry(rel, "dir", DIR_MODE, mtime)
    if stat.S_ISLNK(st.st_mode):
        return SourceEntry(rel, "symlink", SYMLINK_MODE, mtime, link=target)
    if stat.S_ISREG(st.st_mode):
        mode = normalised_file_mode(st.st_mode)
        if st.st_nlink > 1:
            first = first_of_inode.setdefault((st.st_dev, st.st_ino), rel)
            if first != rel:
                return SourceEntry(rel, "hardlink", mode, mtime, size=st.st_size, link=first)
        return SourceEntry(rel, "file", mode, mtime, size=st.st_size)
    raise ArchiveError(f"cannot archive {rel}: it is {describe_file_type(st.st_mode)}")


def _check_links(source_dir: Path, entries: list[SourceEntry]) -> None:
    symlinks = {e.rel: e.link for e in entries if e.kind == "symlink"}
    for rel, target in symlinks.items():
        try:
            resolve_link(rel, target, symlinks)
        except ValueError as exc:
            raise ArchiveError(
                f"cannot archive symlink {source_dir / rel} -> {target}: {exc}"
                " (only relative links that stay inside the layer can be published)"
            ) from None


def _read_file(
    path: Path, size: int, consume: Callable[[bytes], object], progress: Callable[[int], None]
) -> None:
    """Pass exactly `size` bytes of `path` to `consume`; a file that changed is an error."""
    remaining = size
    try:
        with open(path, "rb", buffering=0) as f:
            while remaining:
                data = f.read(min(remaining, _READ_SIZE))
                if not data:
                    break
                consume(data)
                remaining -= len(data)
                progress(len(data))
            grew = bool(f.read(1))
    except OSError as exc:
        raise ArchiveError(f"cannot archive {path}: {exc.strerror}") from None
    if remaining or grew:
        raise ArchiveError(f"cannot archive {path}: the file changed while it was being read")


# -- tar -------------------------------------------------------------------------------

_BLOCK = tarfile.BLOCKSIZE
_TAR_TYPES = {
    "dir": tarfile.DIRTYPE,
    "file": tarfile.REGTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
}


def tar_header(entry: SourceEntry, root_name: str) -> bytes:
    """The header block(s) of one entry; PAX records appear only for long or non-ASCII names."""
    info = tarfile.TarInfo(f"{root_name}/{entry.rel}" if entry.rel else root_name)
    info.type = _TAR_TYPES[entry.kind]
    info.mode = entry.mode
    info.mtime = entry.mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if entry.kind == "file":
        info.size = entry.size
    elif entry.kind == "symlink":
        info.linkname = entry.link
    elif entry.kind == "hardlink":
        info.linkname = f"{root_name}/{entry.link}"
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


def write_tar(
    entries: list[SourceEntry],
    source_dir: Path,
    root_name: str,
    write: Callable[[bytes], object],
    progress: Callable[[int], None],
) -> None:
    """Write the uncompressed tar stream of `entries` to `write`."""
    offset = 0
    for entry in entries:
        header = tar_header(entry, root_name)
        write(header)
        offset += len(header)
        if entry.kind != "file":
            continue
        _read_file(source_dir / entry.rel, entry.size, write, progress)
        padding = -entry.size % _BLOCK
        if padding:
            write(bytes(padding))
        offset += entry.size + padding
    # The end-of-archive marker (two zero blocks), padded to whole records like tar(1).
    end = offset + 2 * _BLOCK
    write(bytes(2 * _BLOCK + -end % tarfile.RECORDSIZE))


# -- zip -------------------------------------------------------------------------------

_ZIP64_LIMIT = 0xFFFFFFFF
# Members at least this big get ZIP64 sizes; the margin covers deflate's worst-case growth.
_ZIP64_MEMBER = 0xF0000000
_ZIP_EPOCH = 315532800  # 1980-01-01T00:00:00Z, the earliest date zip can store
_ZIP_LAST = 4354819199  # 2107-12-31T23:59:59Z, the latest
_FLAG_DESCRIPTOR = 0x08
_FLAG_UTF8 = 0x800
_STORED, _DEFLATED = 0, 8


@dataclass
class _ZipMember:
    """Central-directory facts about one member, completed as its data is written."""

    name: bytes
    flags: int
    method: int
    dos_time: int
    dos_date: int
    external_attr: int
    zip64: bool
    crc: int = 0
    size: int = 0
    compressed: int = 0
    offset: int = 0

    @property
    def version(self) -> int:
        return 45 if self.zip64 or self.offset >= _ZIP64_LIMIT else 20


def _dos_datetime(mtime: int) -> tuple[int, int]:
    t = time.gmtime(min(max(mtime, _ZIP_EPOCH), _ZIP_LAST))
    dos_date = (t.tm_year - 1980) << 9 | t.tm_mon << 5 | t.tm_mday
    dos_time = t.tm_hour << 11 | t.tm_min << 5 | t.tm_sec // 2
    return dos_time, dos_date


class ZipStreamWriter:
    """Writes a zip archive front to back (no seeking), so it can be hashed as it goes.

    Regular files are deflated in parallel pieces and followed by a data descriptor,
    because their compressed size is not known when the local header is written.
    """

    def __init__(self, out: OrderedOutput, *, pool: Executor, level: int, piece_size: int) -> None:
        self._out = out
        self._pool = pool
        self._codec = DeflatePieces(level, gzip=False)
        self._piece_size = piece_size
        self._members: list[_ZipMember] = []

    def add(
        self, entry: SourceEntry, source_dir: Path, root_name: str, progress: Callable[[int], None]
    ) -> None:
        name = f"{root_name}/{entry.rel}" if entry.rel else root_name
        if entry.kind == "dir":
            self._add_stored(name + "/", b"", stat.S_IFDIR | entry.mode, entry.mtime, 0x10)
        elif entry.kind == "symlink":
            target = entry.link.encode("utf-8")
            self._add_stored(name, target, stat.S_IFLNK | entry.mode, entry.mtime, 0)
        else:
            self._add_file(name, source_dir / entry.rel, entry, progress)

    def _member(
        self, name: str, flags: int, method: int, mtime: int, attr: int, zip64: bool
    ) -> _ZipMember:
        raw = name.encode("utf-8")
        if not raw.isascii():
            flags |= _FLAG_UTF8
        dos_time, dos_date = _dos_datetime(mtime)
        member = _ZipMember(raw, flags, method, dos_time, dos_date, attr, zip64)
        self._members.append(member)
        return member

    def _add_stored(self, name: str, data: bytes, mode: int, mtime: int, dos_attr: int) -> None:
        member = self._member(name, 0, _STORED, mtime, mode << 16 | dos_attr, False)
        member.crc = zlib.crc32(data)
        member.size = member.compressed = len(data)
        self._out.put(lambda: self._local_header(member))
        self._out.put(data)

    def _add_file(
        self, name: str, path: Path, entry: SourceEntry, progress: Callable[[int], None]
    ) -> None:
        zip64 = entry.size >= _ZIP64_MEMBER
        member = self._member(
            name, _FLAG_DESCRIPTOR, _DEFLATED, entry.mtime, (stat.S_IFREG | entry.mode) << 16, zip64
        )
        self._out.put(lambda: self._local_header(member))
        state = _PieceState(bytearray(), b"", 0)

        def consume(data: bytes) -> None:
            state.crc = zlib.crc32(data, state.crc)
            state.pending += data
            while len(state.pending) > self._piece_size:
                self._submit_piece(member, state, final=False)

        _read_file(path, entry.size, consume, progress)
        self._submit_piece(member, state, final=True)
        member.crc = state.crc
        member.size = entry.size
        self._out.put(lambda: self._descriptor(member))

    def _submit_piece(self, member: _ZipMember, state: _PieceState, *, final: bool) -> None:
        cut = len(state.pending) if final else self._piece_size
        piece = bytes(state.pending[:cut])
        del state.pending[:cut]
        future = self._pool.submit(self._codec.compress, piece, state.history, final)
        state.history = (state.history + piece)[-_DEFLATE_WINDOW:]

        def count(data: bytes) -> None:
            member.compressed += len(data)

        self._out.put_result(future, count)

    def _local_header(self, member: _ZipMember) -> bytes:
        member.offset = self._out.offset
        if member.flags & _FLAG_DESCRIPTOR:
            crc, size, compressed = 0, 0, 0
        else:
            crc, size, compressed = member.crc, member.size, member.compressed
        extra = b""
        if member.zip64:
            extra = struct.pack("<HHQQ", 1, 16, size, compressed)
            size = compressed = _ZIP64_LIMIT
        head = struct.pack(
            "<IHHHHHIIIHH",
            0x04034B50,
            member.version,
            member.flags,
            member.method,
            member.dos_time,
            member.dos_date,
            crc,
            compressed,
            size,
            len(member.name),
            len(extra),
        )
        return head + member.name + extra

    def _descriptor(self, member: _ZipMember) -> bytes:
        if member.zip64:
            return struct.pack("<IIQQ", 0x08074B50, member.crc, member.compressed, member.size)
        return struct.pack("<IIII", 0x08074B50, member.crc, member.compressed, member.size)

    def finish(self) -> None:
        """Queue the central directory; call after the last `add`."""
        self._out.put(self._central_directory)

    def _central_directory(self) -> bytes:
        start = self._out.offset
        records = b"".join(self._central_record(m) for m in self._members)
        return records + _end_records(len(self._members), start, len(records))

    @staticmethod
    def _central_record(member: _ZipMember) -> bytes:
        size, compressed, offset = member.size, member.compressed, member.offset
        extra_values: list[int] = []
        if member.zip64:
            extra_values += [size, compressed]
            size = compressed = _ZIP64_LIMIT
        if offset >= _ZIP64_LIMIT:
            extra_values.append(offset)
            offset = _ZIP64_LIMIT
        extra = b""
        if extra_values:
            extra = struct.pack(f"<HH{len(extra_values)}Q", 1, 8 * len(extra_values), *extra_values)
        head = struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            0x0300 | member.version,  # made by: Unix, so external_attr holds st_mode
            member.version,
            member.flags,
            member.method,
            member.dos_time,
            member.dos_date,
            member.crc,
            compressed,
            size,
            len(member.name),
            len(extra),
            0,
            0,
            0,
            member.external_attr,
            offset,
        )
        return head + member.name + extra


@dataclass
class _PieceState:
    pending: bytearray
    history: bytes
    crc: int


def _end_records(count: int, start: int, length: int) -> bytes:
    end = b""
    if count >= 0xFFFF or start >= _ZIP64_LIMIT or start + length >= _ZIP64_LIMIT:
        record_at = start + length
        end += struct.pack(
            "<IQHHIIQQQQ", 0x06064B50, 44, 0x032D, 45, 0, 0, count, count, length, start
        )
        end += struct.pack("<IIQI", 0x07064B50, 0, record_at, 1)
        count, length, start = (
            min(count, 0xFFFF),
            min(length, _ZIP64_LIMIT),
            min(start, _ZIP64_LIMIT),
        )
    return end + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, length, start, 0)
