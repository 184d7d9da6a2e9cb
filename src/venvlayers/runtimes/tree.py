"""Runtime trees: names like `cpython@3.11.7`, unpacking archives, the interpreter inside.

A runtime archive is unpacked once into the cache (`unpacked_runtime`), with its standard
library compiled, and hard-linked from there into every build that uses it.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from pathlib import Path

from .._util.cache import cache_root
from .._util.fs import remove_tree
from .._util.proc import run
from ..archives import extract_archive
from ..errors import ArchiveError, RuntimeSourceError
from ..platforms import TargetPlatform
from .cache import RuntimeArchive

__all__ = [
    "IMPLEMENTATIONS",
    "parse_runtime_name",
    "runtime_python",
    "runtime_python_relpath",
    "unpack_runtime",
    "unpacked_runtime",
]

IMPLEMENTATIONS = ("cpython", "pypy")
_VERSION_RE = re.compile(r"^\d+\.\d+(\.\d+((a|b|rc)\d+)?)?$")


def parse_runtime_name(text: str) -> tuple[str, str]:
    """Split `cpython@3.11.7` into implementation and version; ValueError if malformed."""
    implementation, at, version = text.strip().partition("@")
    if not at or implementation not in IMPLEMENTATIONS or not _VERSION_RE.match(version):
        raise ValueError(
            f"runtime names look like 'cpython@3.12.7' or 'pypy@3.10' "
            f"(implementation {' or '.join(IMPLEMENTATIONS)}), not {text!r}"
        )
    return implementation, version


# --------------------------------------------------------------------------- unpacking


def unpack_runtime(runtime: RuntimeArchive | Path, dest: Path) -> None:
    """Extract a runtime archive so that its single top folder (`python/`) becomes `dest`.

    `dest` must not exist. The archive is extracted with the layers' safe extractor
    into a temporary sibling that is renamed into place, so a failed unpack leaves
    nothing at `dest`.
    """
    archive = runtime.path if isinstance(runtime, RuntimeArchive) else Path(runtime)
    if dest.exists() or dest.is_symlink():
        raise RuntimeSourceError(f"cannot unpack {archive.name}: {dest} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.unpack-", dir=dest.parent))
    try:
        try:
            # the one safe extractor (layers use it too): one top folder, no member
            # or link leaving it, nothing special; what it refuses, it names
            extracted = extract_archive(archive, tmp)
        except ArchiveError as exc:
            raise RuntimeSourceError(
                f"cannot unpack runtime archive {archive}: {exc}; remove it from the cache "
                "(`venvlayers runtime prune`) or fetch it again"
            ) from None
        os.rename(extracted.path, dest)
    finally:
        remove_tree(tmp)


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
