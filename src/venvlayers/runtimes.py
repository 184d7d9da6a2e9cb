"""Obtaining runtime archives: the cache, python-build-standalone, mirrors, explicit archives.

A runtime layer starts from a python-build-standalone ("PBS") style archive: one top
folder (`python/`) holding `bin/`, `lib/`, `include/` and `share/`. `obtain_runtime`
finds one, in this order:

1. an explicit archive named by the spec (local path or URL, with its sha256);
2. the cache: an imported or earlier downloaded runtime of the same implementation,
   version and platform (newest first), so the second use needs no network;
3. `$VENVLAYERS_RUNTIME_MIRROR`: a directory or URL serving PBS file names;
4. a download from the URL in pbs-installer's release table.

Whatever is fetched lands, verified, in the cache (`_runtime_cache`) keyed by sha256.
"""

from __future__ import annotations

import os
import re
import tarfile
import tempfile
import threading
import urllib.parse
import zipfile
from pathlib import Path

from . import _pbs
from ._cache import cache_root
from ._fs import remove_tree
from ._hashing import file_sha256
from ._proc import run
from ._progress import NULL_REPORTER, Reporter
from ._runtime_cache import (
    CachedRuntime,
    PruneResult,
    RuntimeArchive,
    add_runtime_archive,
    cached_by_sha256,
    commit_entry,
    find_cached,
    list_runtimes,
    prune_runtimes,
    runtime_to_dict,
    runtimes_dir,
    staging_dir,
)
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
    "runtime_to_dict",
    "runtimes_dir",
    "unpack_runtime",
]

MIRROR_ENV = "VENVLAYERS_RUNTIME_MIRROR"
IMPLEMENTATIONS = ("cpython", "pypy")
_VERSION_RE = re.compile(r"^\d+\.\d+(\.\d+((a|b|rc)\d+)?)?$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def parse_runtime_name(text: str) -> tuple[str, str]:
    """Split `cpython@3.11.7` into implementation and version; ValueError if malformed."""
    implementation, at, version = text.strip().partition("@")
    if not at or implementation not in IMPLEMENTATIONS or not _VERSION_RE.match(version):
        raise ValueError(
            f"runtime names look like 'cpython@3.12.7' or 'pypy@3.10' "
            f"(implementation {' or '.join(IMPLEMENTATIONS)}), not {text!r}"
        )
    return implementation, version


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
        cached = find_cached(implementation, full_version, platform)
        if cached is not None:
            return cached
    release = _pbs.find_release(implementation, version, platform)
    cached = find_cached(implementation, release.version, platform)
    if cached is not None:
        return cached
    if not release.sha256:
        raise RuntimeSourceError(
            f"pbs-installer's table has no sha256 for {release.filename}, so it cannot be "
            f"verified; name it as python_archive with python_archive_sha256, or import a "
            "local install with `venvlayers runtime import PREFIX`"
        )
    existing = cached_by_sha256(release.sha256)
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
        return f"{mirror.rstrip('/')}/{urllib.parse.quote(filename)}"
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
        existing = cached_by_sha256(sha256)
        if existing is not None:
            return existing.runtime
        filename = _pbs.url_filename(archive)
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
    # by content, not name: an explicit python_archive URL may be called anything
    with archive.open("rb") as f:
        magic = f.read(4)
    if magic == b"PK\x03\x04":
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                parts = Path(info.filename).parts
                if info.filename.startswith(("/", "\\")) or ".." in parts:
                    raise ValueError(f"unsafe member {info.filename!r}")
            zf.extractall(dest)
        return
    if magic == b"\x28\xb5\x2f\xfd":
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


def unpacked_runtime(runtime: RuntimeArchive) -> Path:
    """The runtime archive unpacked once into the cache, to be linked into builds."""
    tree = cache_root() / "runtimes" / runtime.sha256 / "tree"
    if tree.is_dir():  # renamed into place complete, so present means whole
        return tree
    tmp = tree.with_name(f"tree.tmp-{os.getpid()}-{threading.get_ident()}")
    remove_tree(tmp)
    unpack_runtime(runtime, tmp)
    _compile_stdlib(tmp, runtime)
    try:
        os.rename(tmp, tree)
    except OSError:  # another build unpacked it first
        remove_tree(tmp)
        if not tree.is_dir():
            raise
    return tree


def _compile_stdlib(tree: Path, runtime: RuntimeArchive) -> None:
    """Give the runtime's standard library its bytecode, once per runtime.

    Without it every interpreter start (uv's queries of each new environment included)
    compiles the stdlib modules it imports from source, costing ~0.4 s each time.
    """
    minor = ".".join(runtime.version.split(".")[:2])
    python = tree / ("python.exe" if runtime.platform.os == "win" else f"bin/python{minor}")
    stdlib = tree / ("Lib" if runtime.platform.os == "win" else f"lib/python{minor}")
    run(
        [
            python,
            "-I",
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "-x",
            r"[/\\]site-packages[/\\]",
            stdlib,
        ],
        what=f"compiling the standard library of {runtime.name}",
        error=RuntimeSourceError,
        check=False,  # a module that does not compile (e.g. a test file) is not fatal
    )


def runtime_python_relpath(platform: TargetPlatform, version: str) -> str:
    """The interpreter inside an unpacked runtime, as a POSIX path relative to it."""
    if platform.os == "win":
        return "python.exe"
    major_minor = ".".join(version.split(".")[:2])
    return f"bin/python{major_minor}"


def runtime_python(dest: Path, platform: TargetPlatform, version: str) -> Path:
    """The interpreter of a runtime unpacked at `dest` (`bin/python3.X` / `python.exe`)."""
    return dest / runtime_python_relpath(platform, version)
