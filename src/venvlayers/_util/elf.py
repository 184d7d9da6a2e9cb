"""A small pure-Python reader for the dynamic-linking facts of an ELF file.

Linking layers means looking at every shared object of a layer, and big layers hold
thousands; starting `patchelf --print-needed` for each would dominate the build. The
loader itself needs only the ELF header, the program headers, the `PT_DYNAMIC` segment
and a few strings of the dynamic string table, so that is all this reads: a handful of
small reads per file, however large the file.

Program headers are what the dynamic loader uses (section headers may be stripped or
stale), so the dynamic string table is found the loader's way: `DT_STRTAB` is a virtual
address, translated to a file offset through the `PT_LOAD` segment that contains it.

`read_elf` returns None for a file that is not ELF at all and raises `ELFError` for one
that claims to be ELF but cannot be read as such; callers treat both as "not a shared
library". Nothing here raises anything else for bad content (`OSError` still escapes
for a file that cannot be opened).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "ET_DYN",
    "ET_EXEC",
    "ELFError",
    "ELFInfo",
    "is_elf",
    "parse_elf",
    "read_elf",
    "split_path_list",
]

MAGIC = b"\x7fELF"

ET_EXEC = 2
ET_DYN = 3

_ELFCLASS32 = 1
_ELFCLASS64 = 2
_ELFDATA2LSB = 1
_ELFDATA2MSB = 2

_PT_LOAD = 1
_PT_DYNAMIC = 2

_DT_NULL = 0
_DT_NEEDED = 1
_DT_STRTAB = 5
_DT_STRSZ = 10
_DT_SONAME = 14
_DT_RPATH = 15
_DT_RUNPATH = 29

# e_phnum's escape value: the real count is in section header 0's sh_info
_PN_XNUM = 0xFFFF

# Sanity limits, so that a corrupt header cannot make us read gigabytes.
_MAX_PHNUM = 1 << 16
_MAX_DYNAMIC_BYTES = 1 << 20
_MAX_STRING = 1 << 16
_STRING_CHUNK = 256


class ELFError(ValueError):
    """The file starts like ELF but its headers or dynamic section are unreadable."""


@dataclass(frozen=True)
class ELFInfo:
    """What the dynamic loader needs to know about one ELF file.

    `runpath` and `rpath` are None when the tag is absent; a present but empty tag
    gives `()`. Both are lists of directories as written (`$ORIGIN` unexpanded).
    """

    bits: int  # 32 or 64
    little_endian: bool
    elf_type: int  # e_type: ET_EXEC, ET_DYN, ...
    machine: int  # e_machine: the loader skips libraries built for another one
    has_dynamic: bool  # False for static executables and object files
    needed: tuple[str, ...] = ()
    soname: str | None = None
    runpath: tuple[str, ...] | None = None
    rpath: tuple[str, ...] | None = None

    @property
    def is_shared_object(self) -> bool:
        """A dynamically linked ET_DYN file: a library, an extension module or a PIE."""
        return self.elf_type == ET_DYN and self.has_dynamic

    @property
    def search_path(self) -> tuple[str, ...]:
        """The directories the loader searches for this file's own DT_NEEDED entries.

        glibc ignores DT_RPATH when DT_RUNPATH is present.
        """
        if self.runpath is not None:
            return self.runpath
        return self.rpath or ()

    def compatible_with(self, other: ELFInfo) -> bool:
        """Whether the loader would accept `other` as a dependency of this file."""
        return (self.bits, self.little_endian, self.machine) == (
            other.bits,
            other.little_endian,
            other.machine,
        )


def split_path_list(value: str) -> tuple[str, ...]:
    """Entries of an RPATH/RUNPATH string, empty ones kept (the loader reads them as '.')."""
    return tuple(value.split(":"))


def is_elf(path: Path) -> bool:
    """Whether `path` starts with the ELF magic number (False when unreadable)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return False


def read_elf(path: Path) -> ELFInfo | None:
    """The dynamic-linking facts of `path`, or None when it is not an ELF file.

    Raises `ELFError` for a truncated or corrupt ELF file, and `OSError` when the
    file cannot be opened.
    """
    with open(path, "rb") as f:
        return parse_elf(f)


def parse_elf(f: BinaryIO) -> ELFInfo | None:
    """Like `read_elf`, from an open binary file positioned anywhere."""
    size = _file_size(f)
    f.seek(0)
    ident = f.read(16)
    if ident[:4] != MAGIC:
        return None
    if len(ident) < 16:
        raise ELFError("truncated ELF identification")
    ei_class, ei_data = ident[4], ident[5]
    if ei_class not in (_ELFCLASS32, _ELFCLASS64):
        raise ELFError(f"unknown ELF class {ei_class}")
    if ei_data not in (_ELFDATA2LSB, _ELFDATA2MSB):
        raise ELFError(f"unknown ELF data encoding {ei_data}")
    reader = _Reader(f, size, bits=64 if ei_class == _ELFCLASS64 else 32, little=ei_data == 1)
    return reader.parse()


class _Reader:
    """Parses one file; `bits` and `little` select the struct layouts."""

    def __init__(self, f: BinaryIO, size: int, *, bits: int, little: bool) -> None:
        self.f = f
        self.size = size
        self.bits = bits
        self.little = little
        order = "<" if little else ">"
        if bits == 64:
            self.ehdr = struct.Struct(order + "HHIQQQIHHHHHH")
            # p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align
            self.phdr = struct.Struct(order + "IIQQQQQQ")
            self.dyn = struct.Struct(order + "qQ")
            self.sh_info = struct.Struct(order + "I")
            self.sh_info_offset = 44
        else:
            self.ehdr = struct.Struct(order + "HHIIIIIHHHHHH")
            # p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_flags, p_align
            self.phdr = struct.Struct(order + "IIIIIIII")
            self.dyn = struct.Struct(order + "iI")
            self.sh_info = struct.Struct(order + "I")
            self.sh_info_offset = 28

    def parse(self) -> ELFInfo:
        header = self.ehdr.unpack(self.read(16, self.ehdr.size, "ELF header"))
        e_type, e_machine, _version, _entry, e_phoff, e_shoff = header[:6]
        e_phentsize, e_phnum, e_shentsize = header[8:11]
        if e_phnum == _PN_XNUM:
            e_phnum = self._extended_phnum(e_shoff, e_shentsize)
        base = ELFInfo(
            bits=self.bits,
            little_endian=self.little,
            elf_type=e_type,
            machine=e_machine,
            has_dynamic=False,
        )
        if e_phoff == 0 or e_phnum == 0:
            return base  # relocatable objects have no program headers
        if e_phentsize < self.phdr.size:
            raise ELFError(f"program header entries of {e_phentsize} bytes are too small")
        if e_phnum > _MAX_PHNUM:
            raise ELFError(f"implausible number of program headers ({e_phnum})")
        table = self.read(e_phoff, e_phentsize * e_phnum, "program headers")
        loads: list[tuple[int, int, int]] = []  # (vaddr, filesz, offset)
        dynamic: tuple[int, int] | None = None  # (offset, filesz)
        for i in range(e_phnum):
            fields = self.phdr.unpack_from(table, i * e_phentsize)
            if self.bits == 64:
                p_type, _, p_offset, p_vaddr, _, p_filesz = fields[:6]
            else:
                p_type, p_offset, p_vaddr, _, p_filesz = fields[:5]
            if p_type == _PT_LOAD:
                loads.append((p_vaddr, p_filesz, p_offset))
            elif p_type == _PT_DYNAMIC and dynamic is None:
                dynamic = (p_offset, p_filesz)
        if dynamic is None:
            return base
        return self._dynamic(base, dynamic, loads)

    def _dynamic(
        self, base: ELFInfo, dynamic: tuple[int, int], loads: list[tuple[int, int, int]]
    ) -> ELFInfo:
        offset, filesz = dynamic
        filesz = min(filesz, _MAX_DYNAMIC_BYTES)
        filesz -= filesz % self.dyn.size
        data = self.read(offset, filesz, "dynamic section")
        needed: list[int] = []
        soname = runpath = rpath = None
        strtab = strsz = None
        for tag, value in self.dyn.iter_unpack(data):
            if tag == _DT_NULL:
                break
            if tag == _DT_NEEDED:
                needed.append(value)
            elif tag == _DT_SONAME:
                soname = value
            elif tag == _DT_RUNPATH:
                runpath = value
            elif tag == _DT_RPATH:
                rpath = value
            elif tag == _DT_STRTAB:
                strtab = value
            elif tag == _DT_STRSZ:
                strsz = value
        if not needed and soname is None and runpath is None and rpath is None:
            return replace(base, has_dynamic=True)
        if strtab is None:
            raise ELFError("dynamic section has string references but no DT_STRTAB")
        table_offset = self._file_offset(strtab, loads)
        # the string table ends at DT_STRSZ, or at the end of the file if that is missing
        table_end = self.size if strsz is None else min(self.size, table_offset + strsz)

        def string(index: int) -> str:
            return self.cstring(table_offset + index, table_end)

        return replace(
            base,
            has_dynamic=True,
            needed=tuple(string(i) for i in needed),
            soname=None if soname is None else string(soname),
            runpath=None if runpath is None else split_path_list(string(runpath)),
            rpath=None if rpath is None else split_path_list(string(rpath)),
        )

    def _file_offset(self, vaddr: int, loads: list[tuple[int, int, int]]) -> int:
        for seg_vaddr, seg_filesz, seg_offset in loads:
            if seg_vaddr <= vaddr < seg_vaddr + seg_filesz:
                return vaddr - seg_vaddr + seg_offset
        raise ELFError(f"dynamic string table address {vaddr:#x} is in no loaded segment")

    def _extended_phnum(self, e_shoff: int, e_shentsize: int) -> int:
        if e_shoff == 0 or e_shentsize < self.sh_info_offset + 4:
            raise ELFError("e_phnum is PN_XNUM but there is no section header 0")
        raw = self.read(e_shoff + self.sh_info_offset, 4, "section header 0")
        count: int = self.sh_info.unpack(raw)[0]
        return count

    def read(self, offset: int, length: int, what: str) -> bytes:
        return _read_at(self.f, offset, length, self.size, what=what)

    def cstring(self, offset: int, end: int) -> str:
        """The NUL-terminated string at `offset`, which must end before `end`."""
        if offset >= end:
            raise ELFError(f"string at {offset:#x} is outside the string table")
        chunks: list[bytes] = []
        position, total = offset, 0
        while True:
            length = min(_STRING_CHUNK, end - position)
            if length <= 0 or total >= _MAX_STRING:
                raise ELFError(f"unterminated string at {offset:#x}")
            self.f.seek(position)
            chunk = self.f.read(length)
            if not chunk:
                raise ELFError(f"unterminated string at {offset:#x}")
            nul = chunk.find(b"\0")
            if nul >= 0:
                chunks.append(chunk[:nul])
                return os.fsdecode(b"".join(chunks))
            chunks.append(chunk)
            position += len(chunk)
            total += len(chunk)


def _file_size(f: BinaryIO) -> int:
    try:
        return os.fstat(f.fileno()).st_size
    except (OSError, AttributeError, ValueError):  # e.g. io.BytesIO has no descriptor
        position = f.tell()
        end = f.seek(0, os.SEEK_END)
        f.seek(position)
        return end


def _read_at(f: BinaryIO, offset: int, length: int, size: int, *, what: str) -> bytes:
    if offset < 0 or length < 0 or offset + length > size:
        raise ELFError(f"{what} ({length} bytes at {offset:#x}) is beyond the end of the file")
    f.seek(offset)
    data = f.read(length)
    if len(data) != length:
        raise ELFError(f"{what} is truncated")
    return data
