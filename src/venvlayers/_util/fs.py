"""Filesystem helpers: atomic writes, safe temporary siblings, link-or-copy."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any


def format_json(data: Any) -> str:
    """Stable JSON text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write `path` so that readers see either the old or the whole new content.

    The content goes to a temporary sibling, is flushed to disk, then renamed over
    the target: an interrupted run never leaves a half-written file looking valid.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o644)  # mkstemp's 0600 would make published files unreadable
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    write_atomic(path, format_json(data))


def write_if_changed(path: Path, text: str) -> bool:
    """Atomically write `text` unless the file already holds exactly it."""
    try:
        if path.read_text("utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    write_atomic(path, text)
    return True


def remove_tree(path: Path) -> None:
    """Remove a file, link or directory tree, also when read-only entries are inside."""
    if path.is_symlink() or path.is_file():
        path.unlink()
        return
    if not path.exists():
        return

    def _retry_writable(func: Any, name: str, _exc: BaseException) -> None:
        os.chmod(name, 0o700)
        func(name)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=_retry_writable)
    else:
        shutil.rmtree(path, onerror=lambda f, n, e: _retry_writable(f, n, e[1]))


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link `src` to `dst` where possible (same filesystem), else copy it."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def link_tree(source: Path, dest: Path) -> None:
    """Recreate `source` at the new path `dest` with hard links (copies across devices).

    Symlinks are recreated as they are. Callers must replace linked files rather
    than write into them, or `source` changes too.
    """
    dest.mkdir(parents=True)
    for root, dirs, files in os.walk(source):
        here = Path(root)
        there = dest / here.relative_to(source)
        for name in dirs:
            src = here / name
            if src.is_symlink():
                (there / name).symlink_to(os.readlink(src))
            else:
                (there / name).mkdir()
                shutil.copymode(src, there / name)
        for name in files:
            src = here / name
            if src.is_symlink():
                (there / name).symlink_to(os.readlink(src))
            else:
                link_or_copy(src, there / name)
    shutil.copymode(source, dest)


def dir_size(path: Path) -> int:
    """Bytes used by regular files below `path` (hard links counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_size
    return total


def human_size(n: int) -> str:
    """`123 B`, `4.5 KiB`, `6.7 MiB`, `1.2 GiB`."""
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


# -- replacing directories --------------------------------------------------------------
# Deploy commits and pull outputs replace whole directories; a crash must leave either
# the old or the new one findable.

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@functools.cache
def _renameat2() -> Any:
    """glibc's renameat2 (2.28+), or None where it does not exist."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux `RENAME_EXCHANGE`); False if unsupported."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False  # old kernel or a file system without it
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def replace_dir(new: Path, final: Path, aside: Path, *, use_exchange: bool = True) -> None:
    """Put directory `new` at `final`; whatever was at `final` ends up at `aside`.

    With `RENAME_EXCHANGE` there is no moment without a `final`. Elsewhere `final`
    is first renamed to `aside`, then `new` renamed in: a crash between the two leaves
    `final` missing with the old version at `aside`, which `restore_aside` undoes.
    """
    if not os.path.lexists(final):
        os.rename(new, final)
        return
    if use_exchange and exchange(new, final):
        os.rename(new, aside)  # `new` now names the old version
        return
    os.rename(final, aside)
    try:
        os.rename(new, final)
    except BaseException:
        os.rename(aside, final)
        raise


def restore_aside(final: Path, aside: Path) -> None:
    """Undo a `replace_dir` cut short between its two renames."""
    if os.path.lexists(aside) and not os.path.lexists(final):
        os.rename(aside, final)
