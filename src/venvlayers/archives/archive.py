"""Layer archives: reproducible, parallel writing and safe, verified reading.

Publishing calls `write_archive`; deploying calls `verify_file`, then
`extract_archive`, and keeps the returned manifest to check the installed layer later
with `verify_tree`.

Reproducibility: the same tree content gives the same bytes, whatever the directory
it sits in, its owners, umask, mtimes newer than the clamp, or the thread count.
It holds for a given version of the compression libraries (libzstd, liblzma, zlib);
their output is not promised to stay the same across versions.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

from .._util.hashing import file_sha256
from ..errors import ArchiveError
from ..progress import NULL_REPORTER, Reporter
from .codecs import (
    ChunkedCompressor,
    OrderedOutput,
    ZstdStream,
    chunk_codec,
)
from .common import DEFAULT_FORMAT, ArchiveFormat, ArchiveInfo, ManifestEntry
from .extract import ExtractedLayer, extract
from .write import SourceEntry, ZipStreamWriter, scan_tree, write_tar

__all__ = [
    "DEFAULT_FORMAT",
    "ArchiveFormat",
    "ArchiveInfo",
    "ExtractedLayer",
    "ManifestEntry",
    "cleanup_partials",
    "default_level",
    "extract_archive",
    "hash_installed_tree",
    "verify_file",
    "verify_tree",
    "write_archive",
]


_DEFAULT_LEVELS = {
    # Measured on a 251 MB numpy/scipy/pandas/scikit-learn venv, two cores: zstd 10 is
    # 1.19x the size of `xz -6` at ~35x its speed (3.6 s against 128 s) and 0.79x the
    # size of `gzip -6` at 4x its speed. Levels 3 and 6 are faster but 1.39x and 1.27x
    # the size of xz; 12 saves 0.4% for 60% more CPU; 15 saves 1.5% for 7x the CPU.
    ArchiveFormat.TAR_ZST: 10,
    ArchiveFormat.TAR_XZ: 6,
    ArchiveFormat.TAR_GZ: 6,
    ArchiveFormat.ZIP: 6,
}
_LEVEL_RANGES = {
    ArchiveFormat.TAR_ZST: range(1, 23),
    ArchiveFormat.TAR_XZ: range(0, 10),
    ArchiveFormat.TAR_GZ: range(1, 10),
    ArchiveFormat.ZIP: range(0, 10),
}
# Uncompressed bytes per independently compressed chunk. Fixed, because chunk
# boundaries shape the output; large enough that the ratio barely suffers (xz's
# dictionary at preset 6 is 8 MiB; deflate only looks 32 KiB back).
_XZ_CHUNK = 32 << 20
_DEFLATE_CHUNK = 4 << 20

PARTIAL_MARKER = ".partial-"


def default_level(fmt: ArchiveFormat) -> int:
    """The compression level `write_archive` uses for `fmt` unless told otherwise."""
    return _DEFAULT_LEVELS[fmt]


def write_archive(
    source_dir: Path,
    dest: Path,
    *,
    root_name: str,
    fmt: ArchiveFormat,
    clamp_mtime: int,
    level: int | None = None,
    threads: int = 0,
    exclude: Callable[[str], bool] | None = None,
    reporter: Reporter = NULL_REPORTER,
    report_key: str = "",
) -> ArchiveInfo:
    """Archive `source_dir` as `dest`, with every entry below the top folder `root_name/`.

    Entries are read straight from `source_dir` in sorted order. `exclude` receives
    each path relative to `source_dir` (POSIX, e.g. ``lib/x/__pycache__``) and drops it,
    with everything below it, when it returns True. Mtimes are clamped to
    `clamp_mtime`. `threads=0` uses every available core. The archive appears at `dest`
    only when complete and on disk; until then it is a `.NAME.partial-*` sibling.
    Progress (bytes of file content read) goes to `reporter` under `report_key`
    (default: the archive's file name).
    """
    _check_root_name(root_name)
    level = _check_level(fmt, level)
    workers = _worker_count(threads)
    entries = scan_tree(source_dir, clamp_mtime=clamp_mtime, exclude=exclude)
    key = report_key or dest.name
    reporter.begin(key, f"archiving {root_name}", total=_content_size(entries, fmt))
    ok = False
    try:
        with _PartialFile(dest) as out:
            _write_stream(entries, source_dir, root_name, fmt, level, workers, out, reporter, key)
            info = out.commit()
        ok = True
        return info
    finally:
        reporter.end(key, "done" if ok else "failed")


def _write_stream(
    entries: list[SourceEntry],
    source_dir: Path,
    root_name: str,
    fmt: ArchiveFormat,
    level: int,
    workers: int,
    out: _PartialFile,
    reporter: Reporter,
    key: str,
) -> None:
    def progress(n: int) -> None:
        reporter.advance(key, n)

    if fmt is ArchiveFormat.TAR_XZ:
        workers = min(workers, _xz_worker_limit(level))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="archive")
    ordered = OrderedOutput(out.write, max_pending=2 * workers)
    failed = True
    try:
        if fmt is ArchiveFormat.ZIP:
            zipper = ZipStreamWriter(ordered, pool=pool, level=level, piece_size=_DEFLATE_CHUNK)
            for entry in entries:
                zipper.add(entry, source_dir, root_name, progress)
            zipper.finish()
        else:
            stream: ZstdStream | ChunkedCompressor
            if fmt is ArchiveFormat.TAR_ZST:
                stream = ZstdStream(level, ordered, threads=workers)
            else:
                chunk = _XZ_CHUNK if fmt is ArchiveFormat.TAR_XZ else _DEFLATE_CHUNK
                codec = chunk_codec(fmt, level)
                stream = ChunkedCompressor(codec, ordered, pool=pool, chunk_size=chunk)
            write_tar(entries, source_dir, root_name, stream.write, progress)
            stream.close()
        ordered.flush()
        failed = False
    finally:
        if failed:
            ordered.abort()
        # After a failure (or Ctrl-C) running chunks are abandoned, not awaited: only
        # this thread writes the file, so they cannot touch it.
        pool.shutdown(wait=not failed, cancel_futures=True)


# liblzma's encoder memory per thread at presets 7-9 (dictionary 16-64 MiB), plus a chunk
# in and out; lower presets need under 100 MiB.
_XZ_MEMORY = {7: 250 << 20, 8: 450 << 20, 9: 800 << 20}
_XZ_MEMORY_BUDGET = 4 << 30


def _xz_worker_limit(level: int) -> int:
    """Threads that fit the memory budget: xz -9 on 64 cores would want 50 GiB."""
    return max(1, _XZ_MEMORY_BUDGET // _XZ_MEMORY.get(level, 160 << 20))


def _check_root_name(root_name: str) -> None:
    bad = not root_name or root_name in (".", "..") or any(c in root_name for c in "/\\\x00:")
    if bad:
        raise ArchiveError(f"invalid archive top folder name {root_name!r}")


def _check_level(fmt: ArchiveFormat, level: int | None) -> int:
    if level is None:
        return default_level(fmt)
    allowed = _LEVEL_RANGES[fmt]
    if level not in allowed:
        raise ArchiveError(
            f"compression level {level} is not valid for {fmt.value}"
            f" (use {allowed.start}..{allowed.stop - 1})"
        )
    return level


def _worker_count(threads: int) -> int:
    if threads < 0:
        raise ArchiveError(f"threads must be 0 (all cores) or more, not {threads}")
    if threads:
        return threads
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _content_size(entries: Iterable[SourceEntry], fmt: ArchiveFormat) -> int:
    stored = ("file", "hardlink") if fmt is ArchiveFormat.ZIP else ("file",)
    return sum(entry.size for entry in entries if entry.kind in stored)


class _PartialFile:
    """The archive being written: a locked `.NAME.partial-*` sibling, hashed as it grows.

    `commit()` fsyncs it and renames it over `dest`; leaving the `with` block any other
    way deletes it. A run killed outright leaves the partial file behind, unlocked,
    for `cleanup_partials` to find.
    """

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        token = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.tmp = dest.parent / f".{dest.name}{PARTIAL_MARKER}{token}"
        self._digest = hashlib.sha256()
        self._size = 0
        self._committed = False
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _write_error(dest, exc) from None
        _lock(fd)
        self._file = os.fdopen(fd, "wb", buffering=1 << 20)

    def __enter__(self) -> _PartialFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._committed:
            with contextlib.suppress(OSError):
                self._file.close()
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
        if isinstance(exc, OSError) and not isinstance(exc, ArchiveError):
            raise _write_error(self.dest, exc) from None

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._digest.update(data)
        self._size += len(data)

    def commit(self) -> ArchiveInfo:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp, self.dest)
        self._committed = True
        _fsync_dir(self.dest.parent)
        return ArchiveInfo(self.dest, self._size, self._digest.hexdigest())


_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _lock(fd: int) -> None:
    """Mark a partial file as in use; the OS drops the lock when the process dies."""
    if sys.platform != "win32":
        import fcntl

        # Best effort: some network file systems do not support locks.
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _in_use(path: Path) -> bool:
    if sys.platform == "win32":
        return False  # Windows refuses to delete a file another process has open
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _fsync_dir(directory: Path) -> None:
    if sys.platform == "win32":
        return
    fd = os.open(directory, os.O_RDONLY | _O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_error(dest: Path, exc: OSError) -> ArchiveError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ArchiveError(f"disk full while writing archive {dest}")
    return ArchiveError(f"cannot write archive {dest}: {exc.strerror or exc}")


def cleanup_partials(directory: Path) -> list[Path]:
    """Delete `.NAME.partial-*` files that killed archive writers left in `directory`.

    Files still being written by a live process are left alone. Returns what was removed.
    """
    removed: list[Path] = []
    try:
        candidates = sorted(directory.glob(f".*{PARTIAL_MARKER}*"))
    except OSError:
        return removed
    for path in candidates:
        if not path.is_file() or _in_use(path):
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed


# -- reading ---------------------------------------------------------------------------


def verify_file(path: Path, *, size: int, sha256: str) -> None:
    """Check `path` has exactly `size` bytes and this sha256 (hex, `sha256:` prefix allowed).

    The size is checked first, since it costs nothing.
    """
    expected = sha256.removeprefix("sha256:").lower()
    try:
        actual_size = path.stat().st_size
    except OSError as exc:
        raise ArchiveError(f"cannot read archive {path}: {exc.strerror}") from None
    if actual_size != size:
        raise ArchiveError(
            f"archive {path} has the wrong size: {actual_size} bytes, expected {size}"
        )
    try:
        actual = file_sha256(path)
    except OSError as exc:
        raise ArchiveError(f"cannot read archive {path}: {exc.strerror}") from None
    if actual != expected:
        raise ArchiveError(f"archive {path} has the wrong sha256: {actual}, expected {expected}")


def extract_archive(
    archive: Path,
    dest: Path,
    *,
    expected_root: str | None = None,
    reporter: Reporter = NULL_REPORTER,
    report_key: str = "",
    report_label: str = "",
    on_file: Callable[[str], None] | None = None,
) -> ExtractedLayer:
    """Extract `archive` (format from its content) into the empty directory `dest`.

    The archive must hold exactly one top folder (named `expected_root` if given) and
    nothing unsafe; otherwise an `ArchiveError` names the member, and what was already
    extracted is removed. Memory use does not grow with the archive's size. Progress
    (compressed bytes read) goes to `reporter` under `report_key` (default: file name),
    described as `report_label` (default: `extracting FILE NAME`).
    `on_file` hears, in the extracting thread, of each regular file (path below the top
    folder) once it is completely written: a deploy starts compiling while the rest
    of the archive is still being unpacked. Whatever it starts must be undone by the
    caller if the extraction then fails.
    """
    return extract(
        archive,
        dest,
        expected_root=expected_root,
        reporter=reporter,
        report_key=report_key or archive.name,
        report_label=report_label or f"extracting {archive.name}",
        on_file=on_file,
    )


def hash_installed_tree(
    root: Path, *, exclude: Callable[[str], bool] | None = None, threads: int = 0
) -> tuple[ManifestEntry, ...]:
    """The manifest of what is below `root` now (files hashed, symlinks read), by path.

    `exclude` drops paths (relative, POSIX) and everything below them. Files are
    hashed in parallel (`threads=0`: one per core); hashing releases the GIL.
    """
    found: list[tuple[str, os.stat_result]] = []

    def entry(item: tuple[str, os.stat_result]) -> ManifestEntry:
        rel, st = item
        path = root / rel
        if stat.S_ISLNK(st.st_mode):
            return ManifestEntry(rel, "symlink", target=os.readlink(path))
        return ManifestEntry(rel, "file", st.st_size, file_sha256(path), stat.S_IMODE(st.st_mode))

    try:
        _collect(root, "", exclude, found)
        with ThreadPoolExecutor(max_workers=_worker_count(threads)) as pool:
            return tuple(sorted(pool.map(entry, found), key=lambda e: e.path))
    except OSError as exc:
        where = exc.filename or root
        raise ArchiveError(
            f"cannot read installed files in {root}: {where}: {exc.strerror}"
        ) from None


def _collect(
    directory: Path,
    prefix: str,
    exclude: Callable[[str], bool] | None,
    found: list[tuple[str, os.stat_result]],
) -> None:
    with os.scandir(directory) as it:
        children = list(it)
    for child in children:
        rel = f"{prefix}{child.name}"
        if exclude is not None and exclude(rel):
            continue
        st = child.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            _collect(Path(child.path), f"{rel}/", exclude, found)
        elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            found.append((rel, st))


def verify_tree(
    root: Path,
    manifest: Iterable[ManifestEntry],
    *,
    exclude: Callable[[str], bool] | None = None,
    allow_extra: bool = False,
) -> list[str]:
    """How the tree at `root` differs from `manifest`, one problem per line (empty: intact).

    Extra files are problems unless `allow_extra`; `exclude` hides paths from the
    comparison (e.g. ``__pycache__`` written after deployment).
    """
    if not root.is_dir():
        return [f"{root} is missing"]
    actual = {e.path: e for e in hash_installed_tree(root, exclude=exclude)}
    problems: list[str] = []
    for expected in manifest:
        if exclude is not None and exclude(expected.path):
            continue
        found = actual.pop(expected.path, None)
        problem = _difference(expected, found)
        if problem:
            problems.append(problem)
    if not allow_extra:
        problems += [f"unexpected {entry.kind}: {path}" for path, entry in actual.items()]
    return sorted(problems)


def _difference(expected: ManifestEntry, found: ManifestEntry | None) -> str:
    path = expected.path
    if found is None:
        return f"missing {expected.kind}: {path}"
    if found.kind != expected.kind:
        return f"{path} is a {found.kind}, expected a {expected.kind}"
    if expected.kind == "symlink":
        if found.target != expected.target:
            return f"symlink changed: {path} -> {found.target} (expected -> {expected.target})"
        return ""
    if found.size != expected.size:
        return f"file changed: {path} has {found.size} bytes, expected {expected.size}"
    if found.sha256 != expected.sha256:
        return f"file changed: {path} has different content"
    if sys.platform != "win32" and found.mode != expected.mode:
        return f"mode changed: {path} is {found.mode:04o}, expected {expected.mode:04o}"
    return ""
