"""An application layer's own code: its launch module and support modules.

Each module is a single `.py` file or a package directory, copied into the layer's
site-packages at build time. A package is copied the way its repository sees it: files
ignored by the `.gitignore` rules are left out, and so are `.git*` entries, `__pycache__`
and compiled bytecode. Git decides when it can (the module is in a work tree and git is
installed), otherwise `_gitignore` reads the `.gitignore` files itself.

The copy is exact (files deleted from the source, and modules dropped from the spec,
disappear on the next build) and `modules_hash` covers exactly what would be copied, so
a build can tell from the hash alone whether the copy is still current.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from .._util.fs import remove_tree
from .._util.hashing import file_sha256, hash_strings
from .._util.proc import run
from ..errors import BuildError, VenvLayersError
from . import gitignore as _gitignore

__all__ = [
    "Module",
    "ModuleFile",
    "copy_modules",
    "module_files",
    "modules_hash",
    "scan_module",
]

_LOG = logging.getLogger(__name__)

# Never part of an application's code, whatever the .gitignore files say: version
# control metadata (.git, .gitignore, .gitattributes, .github, ...) and bytecode, which
# the target Python regenerates and which would otherwise pin our hash to one machine.
_ALWAYS_EXCLUDED = (".git*", "__pycache__", "*.pyc", "*.pyo")

# Suffix of the temporary files content is written to before being renamed into place;
# distinctive so leftovers of an interrupted copy can be recognised and removed.
_TMP_SUFFIX = ".vl-tmp"

_CHUNK = 1 << 16


@dataclass(frozen=True)
class ModuleFile:
    """One file to be copied into site-packages."""

    dest: str  # POSIX path relative to site-packages, e.g. "helpers/sub/util.py"
    path: Path  # where it was found in the source tree (possibly a symlink)
    content: Path  # the regular file whose bytes are copied (a symlink's target)
    executable: bool  # copied as 0o755 rather than 0o644


@dataclass(frozen=True)
class Module:
    """A launch or support module and the files it consists of."""

    name: str  # its entry in site-packages: "app.py" or "helpers"
    source: Path
    is_package: bool
    files: tuple[ModuleFile, ...]  # sorted by `dest`


def scan_module(source: Path, *, boundary: Path | None = None, use_git: bool = True) -> Module:
    """The files module `source` (a `.py` file or a package directory) consists of.

    `boundary` (normally the spec's directory) limits which `.gitignore` files are read
    when the module is not inside a git work tree; `use_git=False` always reads them
    ourselves instead of asking git.
    """
    source = Path(os.path.abspath(source))
    name = source.name
    try:
        if source.is_dir():
            return _scan_package(source, boundary, use_git)
        if source.is_file():
            if source.suffix != ".py":
                raise BuildError(f"{source}: a module must be a .py file or a package directory")
            content = source.resolve()
            return Module(
                name, source, False, (ModuleFile(name, source, content, _is_exec(content)),)
            )
    except OSError as exc:
        raise BuildError(f"{exc.filename or source}: cannot read module ({exc.strerror})") from None
    raise BuildError(f"{source}: module does not exist")


def module_files(source: Path, *, boundary: Path | None = None, use_git: bool = True) -> list[Path]:
    """The files of module `source` that a build copies, as paths in the source tree."""
    return [f.path for f in scan_module(source, boundary=boundary, use_git=use_git).files]


def modules_hash(sources: Sequence[Path], *, boundary: Path | None = None) -> str:
    """`sha256:...` over the names, modes and contents of exactly the files copied.

    Independent of where the sources live, of mtimes and of directory order, so the
    same code gives the same hash on every machine.
    """
    items: list[str] = []
    for module in _scan_all(sources, boundary):
        items += ["module", module.name]
        for f in module.files:
            items += [f.dest, "x" if f.executable else "-", _content_sha256(f)]
    return hash_strings(items)


def copy_modules(
    sources: Sequence[Path],
    site_dir: Path,
    *,
    previous: Sequence[str] = (),
    boundary: Path | None = None,
) -> list[str]:
    """Make `site_dir` hold exactly the modules `sources`; return their sorted names.

    `previous` is what this returned for the last build: modules no longer listed are
    removed, and files no longer in a package are removed from its copy. Unchanged
    files are left alone; new content is written to a temporary file and renamed, so a
    file with its final name is always complete. Every source is checked before
    anything in `site_dir` changes.
    """
    modules = _scan_all(sources, boundary)
    names = [m.name for m in modules]
    stale = [_recorded_name(name, site_dir) for name in previous if name not in names]
    try:
        site_dir.mkdir(parents=True, exist_ok=True)
        _remove_leftover_temporaries(site_dir)
        for name in stale:
            remove_tree(site_dir / name)
        for module in modules:
            if module.is_package:
                _sync_package(module, site_dir / module.name)
            else:
                _remove_unless_regular_file(site_dir / module.name)
                _put(module.files[0], site_dir / module.name)
    except OSError as exc:
        where = exc.filename or site_dir
        raise BuildError(f"{where}: cannot copy application modules ({exc.strerror})") from None
    return sorted(names)


# --- listing --------------------------------------------------------------------------


def _scan_all(sources: Iterable[Path], boundary: Path | None) -> list[Module]:
    modules = sorted((scan_module(s, boundary=boundary) for s in sources), key=lambda m: m.name)
    for first, second in itertools.pairwise(modules):
        if first.name == second.name:
            raise BuildError(
                f"{second.source}: module name {second.name!r} is also used by {first.source}"
            )
    return modules


def _scan_package(source: Path, boundary: Path | None, use_git: bool) -> Module:
    # Listing and copying both work on the real directory, so a package given through
    # a symlink behaves like the directory it points to (but keeps the link's name).
    root = source.resolve()
    listed = [rel for rel in _list_tree(root, boundary, use_git) if not _always_excluded(rel)]
    files = _resolve_links(source, root, listed)
    if not files:
        raise BuildError(f"{source}: package has no files to copy (is it ignored by a .gitignore?)")
    named = (ModuleFile(f"{source.name}/{f.dest}", f.path, f.content, f.executable) for f in files)
    return Module(source.name, source, True, tuple(sorted(named, key=lambda f: f.dest)))


def _list_tree(top: Path, boundary: Path | None, use_git: bool) -> list[str]:
    """Files (and symlinks) below `top` that the repository does not ignore."""
    listed = _git_listing(top) if use_git else None
    if listed is None:
        return _gitignore.list_files(top, boundary=boundary, prune=_excluded_name)
    found: list[str] = []
    for rel in listed:
        path = top / rel
        # git lists a nested repository ("sub/") or a submodule ("sub") as one entry;
        # its files are its own repository's business, so list them there.
        if path.is_dir() and not path.is_symlink():
            inner = rel.rstrip("/")
            found += (f"{inner}/{r}" for r in _list_tree(top / inner, boundary, use_git))
        else:
            found.append(rel)
    return found


def _git_listing(top: Path) -> list[str] | None:
    """Tracked and unignored untracked files below `top` per git; None if git cannot say.

    Only the `.gitignore` files count (`--exclude-per-directory`, not
    `--exclude-standard`): a user's global excludes or a clone's `.git/info/exclude`
    would make the copy, and its hash, differ between machines. Tracked files are listed
    even if a pattern matches them, as git itself treats them.
    """
    git = shutil.which("git")
    if git is None:
        return None
    cmd = [git, "ls-files", "-z", "--cached", "--others", "--exclude-per-directory=.gitignore"]
    try:
        proc = run([*cmd, "--", "."], what=f"listing {top} with git", cwd=top, timeout=120)
    except (VenvLayersError, OSError) as exc:
        _LOG.debug("git cannot list %s (%s); reading .gitignore files ourselves", top, exc)
        return None
    names = sorted({name for name in proc.stdout.split("\0") if name})
    if any("\ufffd" in name for name in names):
        # a file name that is not UTF-8 did not survive decoding; walk the tree instead
        return None
    return names


def _excluded_name(name: str) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in _ALWAYS_EXCLUDED)


def _always_excluded(rel: str) -> bool:
    return any(_excluded_name(part) for part in rel.rstrip("/").split("/"))


def _resolve_links(source: Path, root: Path, listed: Sequence[str]) -> list[ModuleFile]:
    """Listed entries as files to copy, with `dest` relative to the package.

    A symlink to a file inside the package is copied as that file's content; one to a
    directory inside the package as that directory's listed files. Links leading
    outside the package are refused (the copy would depend on files nobody declared);
    broken links are skipped with a warning, as the code cannot be using them.
    Entries listed by git but missing from the work tree (deleted, sparse) are skipped.
    """
    by_rel = set(listed)
    found: list[ModuleFile] = []
    real_dirs: dict[Path, Path] = {}

    def add(rel: str, dest: str, expanding: tuple[str, ...]) -> None:
        path = root / rel
        shown = source / dest
        if not path.is_symlink():
            if not path.exists():
                return
            if not path.is_file():
                raise BuildError(f"{shown}: not a regular file")
            # git lists tracked files from its index, even below a directory that has
            # since been replaced by a symlink; never follow one out of the package.
            if path.parent not in real_dirs:
                real_dirs[path.parent] = Path(os.path.realpath(path.parent))
            content = real_dirs[path.parent] / path.name
            if not content.is_relative_to(root):
                raise BuildError(f"{shown}: reached through a symlink leading outside the package")
            found.append(ModuleFile(dest, shown, content, _is_exec(content)))
            return
        target = Path(os.path.realpath(path))
        if not target.is_relative_to(root):
            raise BuildError(f"{shown}: symlink points outside the package (to {target})")
        if not target.exists():
            _LOG.warning("%s: skipping broken symlink (to %s)", shown, os.readlink(path))
            return
        if target.is_file():
            found.append(ModuleFile(dest, shown, target, _is_exec(target)))
            return
        if not target.is_dir():
            raise BuildError(f"{shown}: symlink to something that is not a file ({target})")
        inner = target.relative_to(root).as_posix()
        prefix = "" if inner == "." else f"{inner}/"
        if rel.startswith(prefix) or rel in expanding:
            raise BuildError(f"{shown}: symlink to a directory that contains it (a cycle)")
        for member in sorted(r for r in by_rel if r.startswith(prefix)):
            add(member, f"{dest}/{member[len(prefix) :]}", (*expanding, rel))

    for rel in sorted(by_rel):
        add(rel, rel, ())
    return found


def _is_exec(path: Path) -> bool:
    return bool(path.stat().st_mode & stat.S_IXUSR)


def _content_sha256(f: ModuleFile) -> str:
    try:
        return file_sha256(f.content)
    except OSError as exc:
        raise BuildError(f"{f.path}: cannot read ({exc.strerror})") from None


# --- copying --------------------------------------------------------------------------


def _recorded_name(name: str, site_dir: Path) -> str:
    # The names come from a build record on disk; never let one reach outside site_dir.
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise BuildError(f"{site_dir}: previous build recorded an invalid module name {name!r}")
    return name


def _remove_leftover_temporaries(site_dir: Path) -> None:
    # Only single-file modules are written straight into site_dir; temporaries inside
    # a package directory are removed with any other file that does not belong there.
    for entry in site_dir.iterdir():
        if entry.name.startswith(".") and entry.name.endswith(_TMP_SUFFIX):
            entry.unlink(missing_ok=True)


def _remove_unless_regular_file(path: Path) -> None:
    if path.is_symlink() or path.is_dir():
        remove_tree(path)


def _sync_package(module: Module, dest: Path) -> None:
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        dest.unlink()
    dest.mkdir(exist_ok=True)
    prefix = f"{module.name}/"
    wanted = {f.dest.removeprefix(prefix): f for f in module.files}
    dirs = {rel.rsplit("/", depth)[0] for rel in wanted for depth in range(1, rel.count("/") + 1)}
    _prune(dest, "", wanted, dirs)
    for rel, f in sorted(wanted.items()):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        _put(f, target)


def _prune(directory: Path, rel: str, files: Mapping[str, object], dirs: set[str]) -> None:
    """Remove everything below `directory` that is not a wanted file or directory.

    This also clears bytecode of deleted modules, leftover temporaries and entries
    whose kind changed (a file that became a directory and vice versa).
    """
    with os.scandir(directory) as it:
        entries = list(it)
    for entry in entries:
        path = f"{rel}/{entry.name}" if rel else entry.name
        if entry.is_dir(follow_symlinks=False):
            if path in dirs:
                _prune(Path(entry.path), path, files, dirs)
            else:
                remove_tree(Path(entry.path))
        elif path not in files or entry.is_symlink():
            os.unlink(entry.path)


def _put(f: ModuleFile, target: Path) -> None:
    """Give `target` the content and mode of `f`, via a temporary file and a rename.

    An identical file is left untouched, so an unchanged rebuild keeps its mtimes (and
    any bytecode Python compiled from it stays valid). No fsync: the environment's
    packages are installed without one too, and an interrupted build is caught by the
    caller's completion stamp, not by this file.
    """
    mode = 0o755 if f.executable else 0o644
    try:
        current = os.lstat(target)
    except FileNotFoundError:
        current = None
    if current is not None and stat.S_ISREG(current.st_mode) and _same_bytes(f.content, target):
        if stat.S_IMODE(current.st_mode) != mode:
            os.chmod(target, mode)
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=_TMP_SUFFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, f.content.open("rb") as src:
            shutil.copyfileobj(src, out, _CHUNK)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            chunk = fa.read(_CHUNK)
            if chunk != fb.read(_CHUNK):
                return False
            if not chunk:
                return True
