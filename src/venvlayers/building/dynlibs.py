"""Shared libraries across layers on Linux: `$ORIGIN`-relative RUNPATH entries.

In one environment, wheels find each other's shared libraries through their own
RUNPATHs (torch's `$ORIGIN/../../nvidia/cublas/lib`), because they share one
site-packages. Split across layers they do not: `libtorch_cuda.so` in framework
`torch` needs `libcudart.so.12` from framework `cuda`. venvstacks sets LD_LIBRARY_PATH
in a bash wrapper; that leaks into child processes and does nothing for an embedding
program that starts the runtime's python with the app's site dir on sys.path.

Instead, at build time, every ELF file of an upper layer that needs a library which
only a lower layer provides gets a RUNPATH entry relative to its own directory,
leaving its layer and entering the lower layer *by its deployed name*:

    $ORIGIN/../../../../../framework-cuda@2/lib/python3.12/site-packages/nvidia/cuda_runtime/lib

Layers always sit side by side under their deployed names (in the build directory
through alias symlinks, in exports and deployments for real), so that entry holds in
every place a layer can be, and a whole stack can be moved without rewriting it. The
loader resolves it itself, in any process, however python was started.

Rules, in the order they are applied:

- A needed library that the upper layer already satisfies itself - through one of the
  file's existing RUNPATH/RPATH entries (with `$ORIGIN` expanded) reaching a file
  inside the upper layer, or by a file of that name next to the needing file (its
  package ships and loads its own copy) - is left alone.
- Otherwise the lower layers are asked in priority order (sys.path order: frameworks
  in C3 order, then the runtime). Only files named like the DT_NEEDED entry count,
  since that is the name the loader looks for in each RUNPATH directory; wheels cannot
  hold symlinks, so a wheel's library file is named by its SONAME anyway. Files matching
  the providing layer's `dynlib_exclude` patterns (fnmatch, against the file name and
  against the site-packages-relative POSIX path) are not offered.
- Two providers with different content for one needed name are an error (which one
  the loader picks would depend on entry order, silently); identical copies (often the
  same uv cache inode) are fine and the higher-priority one is used.
- Existing entries come first and are kept as written; ours are appended, without
  duplicates. `$ORIGIN` entries that leave the upper layer are ours from an earlier
  run (a wheel cannot know what lies beside its environment): they are dropped and
  recomputed, so a rerun is a no-op and a changed lower layer (new deployed name,
  excluded library) leaves no stale entry behind.

RUNPATH or RPATH: a file without either tag gets DT_RUNPATH (it applies only to the
file's own dependencies and lets LD_LIBRARY_PATH override it for debugging). A file
that already has DT_RUNPATH keeps it. A file that only has DT_RPATH keeps DT_RPATH
(`patchelf --force-rpath`): its author chose the older semantics, under which the
entries also serve the libraries it loads (packaging tools such as conda-build set
DT_RPATH on purpose for that), and converting would silently change how those are
found, and let LD_LIBRARY_PATH take precedence. Our entries work the same under either
tag, since both are searched for the file's own DT_NEEDED.

Files are never modified in place: build environments are hard links into uv's cache,
so each file is copied to a temporary sibling, patched there, and renamed over the
original (a new inode, same mode). Only files whose entries must change are copied,
and only headers and dynamic sections are read (see `_elf`), so big layers are cheap.

Linux only: on macOS the same idea needs `install_name_tool -add_rpath` with
`@loader_path` (and LC_LOAD_DYLIB names that use `@rpath`); Windows has no per-file
search path. Elsewhere `link_lower_libraries` reports nothing.
"""

from __future__ import annotations

import contextlib
import filecmp
import fnmatch
import logging
import os
import posixpath
import sys
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .._util.elf import ET_DYN, ELFError, ELFInfo, read_elf
from .._util.patchelf import SearchPathChange, rewrite_search_paths
from ..errors import BuildError
from ..layout import peer_path
from ..names import DeployName

__all__ = [
    "DynlibReport",
    "LayerLibs",
    "LinkedLibrary",
    "MissingLibrary",
    "PatchedFile",
    "exported_libraries",
    "link_lower_libraries",
]

_LOG = logging.getLogger(__name__)

_PATCH_SUFFIX = ".vl-patching"  # temporary copies; never matches our scan heuristics
_PATCHELF_TIMEOUT = 300.0
_MAX_CONFLICTS_SHOWN = 3
_BATCH = 200  # files per patchelf run, well below the command-line length limit


@dataclass(frozen=True)
class LayerLibs:
    """A lower layer, as a provider of shared libraries."""

    deploy_name: DeployName
    layer_dir: Path  # where it is built
    site_dir_rel: str  # its site-packages, relative to layer_dir (POSIX)
    exclude: tuple[str, ...] = ()  # its dynlib_exclude patterns

    def excludes(self, site_rel: str) -> bool:
        """Whether `dynlib_exclude` hides the library at this site-packages-relative path."""
        name = posixpath.basename(site_rel)
        return any(
            fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(site_rel, pattern)
            for pattern in self.exclude
        )


@dataclass(frozen=True)
class PatchedFile:
    """One ELF file of the upper layer whose search path was changed."""

    path: str  # relative to the upper layer, POSIX
    tag: str  # "RUNPATH" or "RPATH": the dynamic tag that now holds the entries
    before: tuple[str, ...]
    after: tuple[str, ...]

    @property
    def added(self) -> tuple[str, ...]:
        return tuple(e for e in self.after if e not in self.before)

    @property
    def removed(self) -> tuple[str, ...]:
        return tuple(e for e in self.before if e not in self.after)


@dataclass(frozen=True)
class LinkedLibrary:
    """A needed library that the upper layer finds in a lower layer."""

    name: str  # the DT_NEEDED name
    provider: DeployName  # the lower layer
    path: str  # the library, relative to the provider's site-packages
    dynlib_dir: str  # its directory relative to the upper layer (`../<deploy name>/...`)
    needed_by: tuple[str, ...]  # upper-layer files, relative to the upper layer


@dataclass(frozen=True)
class MissingLibrary:
    """A needed library that neither the upper layer nor any lower layer provides.

    Usually a system library (libc.so.6, libm.so.6, ...): that is expected.
    """

    name: str
    needed_by: tuple[str, ...]


@dataclass(frozen=True)
class DynlibReport:
    """What `link_lower_libraries` found and did."""

    patched: tuple[PatchedFile, ...] = ()
    linked: tuple[LinkedLibrary, ...] = ()
    # lower-layer library directories this layer uses, relative to it, in priority
    # order: the layer config's `dynlib_dirs`
    dynlib_dirs: tuple[str, ...] = ()
    not_found: tuple[MissingLibrary, ...] = ()
    notes: tuple[str, ...] = ()
    scanned: int = 0  # ELF files of the upper layer that were examined


# ------------------------------------------------------------------------ lower layers


@dataclass(frozen=True)
class _Provided:
    """One file of a lower layer offered under a needed name."""

    priority: int  # index of the layer in the lower-layer sequence
    layer: LayerLibs
    site_rel: str  # POSIX, relative to the layer's site-packages
    path: Path
    info: ELFInfo

    @property
    def label(self) -> str:
        return f"{self.site_rel} ({self.layer.deploy_name})"

    @property
    def dir_rel(self) -> str:
        """The library's directory relative to its layer (POSIX)."""
        return posixpath.join(self.layer.site_dir_rel, posixpath.dirname(self.site_rel))


def exported_libraries(
    lower: LayerLibs, *, names: Collection[str] | None = None
) -> dict[str, list[Path]]:
    """Shared libraries in `lower`'s site-packages by file name (excluded ones skipped).

    `names` restricts the scan to those file names, which is how linking uses it: only
    the names some upper-layer file needs are ever opened. Lists are sorted by path.
    """
    found: dict[str, list[Path]] = {}
    for provided in _provided(lower, 0, names):
        found.setdefault(provided.path.name, []).append(provided.path)
    return found


def _provided(
    lower: LayerLibs, priority: int, names: Collection[str] | None
) -> Iterator[_Provided]:
    site = lower.layer_dir / lower.site_dir_rel
    real_layer = os.path.realpath(lower.layer_dir)
    for entry, site_rel in _walk_files(str(site), "", follow_file_links=True):
        if names is not None:
            if entry.name not in names:
                continue
        elif not _looks_like_library(entry.name):
            continue
        if lower.excludes(site_rel):
            continue
        # a link out of the layer would not travel with it
        if not _is_inside(os.path.realpath(entry.path), real_layer):
            continue
        path = Path(entry.path)
        info = _read_elf_quietly(path)
        if info is None or info.elf_type != ET_DYN or not info.has_dynamic:
            continue
        yield _Provided(priority, lower, site_rel, path, info)


def _looks_like_library(name: str) -> bool:
    return name.endswith(".so") or ".so." in name


# ------------------------------------------------------------------------ upper layer


@dataclass(frozen=True)
class _UpperFile:
    path: Path
    rel: str  # relative to the upper layer, POSIX
    info: ELFInfo
    kept: tuple[str, ...]  # existing search-path entries we keep, in order
    wanted: tuple[str, ...]  # needed names it must find in a lower layer, in order

    @property
    def current(self) -> tuple[str, ...]:
        return self.info.search_path


def _scan_upper(layer_dir: Path, site_dir_rel: str, notes: list[str]) -> Iterator[_UpperFile]:
    real_layer = os.path.realpath(layer_dir)
    site = str(layer_dir / site_dir_rel)
    for entry, site_rel in _walk_files(site, "", follow_file_links=False):
        if entry.name.endswith(_PATCH_SUFFIX):
            # left by an interrupted run of ours; the original is intact
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
            continue
        if not _looks_like_library(entry.name) and not _is_executable(entry):
            # extension modules and libraries are *.so*, programs have an x bit;
            # not opening every .py file keeps big layers cheap
            continue
        path = Path(entry.path)
        rel = posixpath.join(site_dir_rel, site_rel)
        try:
            info = read_elf(path)
        except ELFError as exc:
            notes.append(f"{rel}: not linked, unreadable ELF file ({exc})")
            continue
        except OSError as exc:
            notes.append(f"{rel}: not linked, cannot read it ({exc.strerror})")
            continue
        if info is None or not info.has_dynamic:
            continue
        origin = os.path.dirname(entry.path)
        rel_dir = posixpath.dirname(rel)
        kept = tuple(e for e in info.search_path if not _leaves_layer(e, rel_dir))
        wanted: list[str] = []
        for name in info.needed:
            if "/" in name or name in wanted:
                continue  # a path: the loader uses it as it is
            if not _satisfied_inside(name, kept, origin, real_layer):
                wanted.append(name)
        yield _UpperFile(path, rel, info, kept, tuple(wanted))


def _satisfied_inside(name: str, entries: Sequence[str], origin: str, real_layer: str) -> bool:
    """Whether the upper layer provides `name` to a file in directory `origin` itself."""
    if os.path.isfile(os.path.join(origin, name)):
        return True
    for entry in entries:
        directory = _expand_origin(entry, origin)
        if directory is None:
            continue
        candidate = os.path.join(directory, name)
        # isfile() follows links and resolves '..' physically, like the loader's open()
        if os.path.isfile(candidate) and _is_inside(os.path.realpath(candidate), real_layer):
            return True
    return False


def _expand_origin(entry: str, origin: str) -> str | None:
    """`entry` with $ORIGIN expanded; None when it cannot be resolved statically."""
    for token in ("${ORIGIN}", "$ORIGIN"):
        if entry.startswith(token):
            entry = origin + entry[len(token) :]
            break
    # $LIB and $PLATFORM depend on the machine, and relative entries on the working
    # directory of the process: neither says anything about the layer
    if "$" in entry or not entry.startswith("/"):
        return None
    return entry


def _leaves_layer(entry: str, rel_dir: str) -> bool:
    """Whether an `$ORIGIN` entry of a file in `rel_dir` points outside its layer."""
    for token in ("${ORIGIN}", "$ORIGIN"):
        if entry.startswith(token):
            rest = entry[len(token) :]
            break
    else:
        return False
    inside = "/layer/" + rel_dir
    target = posixpath.normpath(inside + "/" + rest.lstrip("/"))
    return not (target == "/layer" or target.startswith("/layer/"))


# ------------------------------------------------------------------------ linking


def link_lower_libraries(
    layer_dir: Path,
    site_dir_rel: str,
    deploy_name: DeployName,
    lower: Sequence[LayerLibs],
    *,
    build_root: Path,
) -> DynlibReport:
    """Make the ELF files of the layer at `layer_dir` find the libraries of `lower`.

    `lower` is in sys.path priority order. `build_root` is the directory holding every
    layer under its deployed name (alias links for versioned layers); each lower layer
    must be reachable there, since that is how the added entries find it at build time.
    Raises `BuildError` for two different lower-layer libraries offered under one
    needed name, and when patchelf fails. Running it again changes nothing.
    """
    if not sys.platform.startswith("linux"):
        return DynlibReport()
    site = layer_dir / site_dir_rel
    if not site.is_dir():
        return DynlibReport()
    _check_reachable(deploy_name, lower, build_root)

    notes: list[str] = []
    uppers = list(_scan_upper(layer_dir, site_dir_rel, notes))
    wanted = {name for upper in uppers for name in upper.wanted}
    offers: dict[str, list[_Provided]] = {}
    for priority, low in enumerate(lower if wanted else ()):
        for provided in _provided(low, priority, wanted):
            offers.setdefault(provided.path.name, []).append(provided)

    chosen, conflicts = _choose_providers(uppers, offers, notes)
    if conflicts:
        raise BuildError(_conflict_message(deploy_name, conflicts))

    plans: list[tuple[_UpperFile, tuple[str, ...]]] = []
    linked: dict[tuple[str, int, str], list[str]] = {}
    missing: dict[str, list[str]] = {}
    for upper in uppers:
        entries = list(upper.kept)
        rel_dir = posixpath.dirname(upper.rel)
        for name in upper.wanted:
            source = chosen.get((name, _abi(upper.info)))
            if source is None:
                missing.setdefault(name, []).append(upper.rel)
                continue
            entry = _origin_entry(deploy_name, rel_dir, source)
            if entry not in entries:
                entries.append(entry)
            key = (name, source.priority, source.site_rel)
            linked.setdefault(key, []).append(upper.rel)
        if tuple(entries) != upper.current:
            plans.append((upper, tuple(entries)))

    patched = _apply(plans)
    return _report(deploy_name, uppers, chosen, linked, missing, patched, notes)


def _check_reachable(deploy_name: str, lower: Sequence[LayerLibs], build_root: Path) -> None:
    for low in lower:
        alias = build_root / low.deploy_name
        if os.path.realpath(alias) != os.path.realpath(low.layer_dir):
            raise BuildError(
                f"{deploy_name}: lower layer {low.deploy_name} is not reachable as {alias}; "
                "layers must sit side by side under their deployed names"
            )


def _abi(info: ELFInfo) -> tuple[int, bool, int]:
    return (info.bits, info.little_endian, info.machine)


_Choice = dict[tuple[str, tuple[int, bool, int]], _Provided]
_Conflict = tuple[str, str, _Provided, _Provided]  # name, needed by, first, second


def _choose_providers(
    uppers: Sequence[_UpperFile], offers: dict[str, list[_Provided]], notes: list[str]
) -> tuple[_Choice, list[_Conflict]]:
    """The lower-layer file each (needed name, ABI) resolves to, and any ambiguities."""
    chosen: _Choice = {}
    conflicts: list[_Conflict] = []
    decided: set[tuple[str, tuple[int, bool, int]]] = set()
    for upper in uppers:
        abi = _abi(upper.info)
        for name in upper.wanted:
            if (name, abi) in decided:
                continue
            decided.add((name, abi))
            # the loader skips a file built for another machine and keeps looking
            candidates = [p for p in offers.get(name, ()) if _abi(p.info) == abi]
            if not candidates:
                continue
            # offers are in priority order, then path order within a layer
            distinct: list[_Provided] = []
            for candidate in candidates:
                if not any(_same_content(candidate.path, d.path) for d in distinct):
                    distinct.append(candidate)
            if len(distinct) > 1:
                conflicts.append((name, upper.rel, distinct[0], distinct[1]))
                continue
            chosen[(name, abi)] = candidates[0]
            if len(candidates) > 1:
                others = ", ".join(c.label for c in candidates[1:])
                notes.append(
                    f"{name}: using {candidates[0].label}; identical copies also in {others}"
                )
    return chosen, conflicts


def _same_content(a: Path, b: Path) -> bool:
    try:
        sa, sb = a.stat(), b.stat()
        if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino):
            return True  # hard links to one uv cache entry, typically
        return sa.st_size == sb.st_size and filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def _conflict_message(deploy_name: str, conflicts: Sequence[_Conflict]) -> str:
    parts = []
    for name, needed_by, first, second in conflicts[:_MAX_CONFLICTS_SHOWN]:
        parts.append(
            f"{needed_by} needs {name}, and the lower layers offer two different files "
            f"of that name: {first.label} and {second.label}"
        )
    more = len(conflicts) - _MAX_CONFLICTS_SHOWN
    if more > 0:
        parts.append(f"and {more} more")
    _name, _by, first, second = conflicts[0]
    hint = (
        f"add one of them to dynlib_exclude in the spec of its layer "
        f'(e.g. dynlib_exclude = ["{second.site_rel}"] for {second.layer.deploy_name})'
    )
    return f"{deploy_name}: {'; '.join(parts)}; {hint}"


def _origin_entry(deploy_name: str, rel_dir: str, provided: _Provided) -> str:
    """The RUNPATH entry for a file in `rel_dir` of the upper layer to reach `provided`.

    Computed as if every layer lived in one directory under its deployed name, which
    is what the build directory (through its aliases), exports and deployments share.
    """
    here = posixpath.join("/stack", deploy_name, rel_dir)
    there = posixpath.join("/stack", provided.layer.deploy_name, provided.dir_rel)
    return "$ORIGIN/" + posixpath.relpath(there, here)


def _report(
    deploy_name: str,
    uppers: Sequence[_UpperFile],
    chosen: _Choice,
    linked: dict[tuple[str, int, str], list[str]],
    missing: dict[str, list[str]],
    patched: Sequence[PatchedFile],
    notes: list[str],
) -> DynlibReport:
    by_key = {(p.priority, p.site_rel): p for p in chosen.values()}
    links: list[LinkedLibrary] = []
    dirs: list[tuple[int, str]] = []
    for (name, priority, site_rel), needed_by in sorted(linked.items(), key=lambda kv: kv[0]):
        provided = by_key[(priority, site_rel)]
        dynlib_dir = peer_path(provided.layer.deploy_name, provided.dir_rel)
        links.append(
            LinkedLibrary(
                name=name,
                provider=provided.layer.deploy_name,
                path=site_rel,
                dynlib_dir=dynlib_dir,
                needed_by=tuple(sorted(needed_by)),
            )
        )
        if (priority, dynlib_dir) not in dirs:
            dirs.append((priority, dynlib_dir))
    return DynlibReport(
        patched=tuple(sorted(patched, key=lambda p: p.path)),
        linked=tuple(links),
        dynlib_dirs=tuple(d for _p, d in sorted(dirs)),
        not_found=tuple(
            MissingLibrary(name, tuple(sorted(by))) for name, by in sorted(missing.items())
        ),
        notes=tuple(notes),
        scanned=len(uppers),
    )


# ------------------------------------------------------------------------ patching


def _apply(plans: Sequence[tuple[_UpperFile, tuple[str, ...]]]) -> list[PatchedFile]:
    changes = [
        SearchPathChange(upper.path, upper.rel, upper.info, entries) for upper, entries in plans
    ]
    rewrite_search_paths(changes, purpose="link shared libraries across layers", error=BuildError)
    return [PatchedFile(c.label, c.tag, c.current, c.entries) for c in changes]


# ------------------------------------------------------------------------ helpers


def _walk_files(
    top: str, rel: str, *, follow_file_links: bool
) -> Iterator[tuple[os.DirEntry[str], str]]:
    """Files below `top` with their POSIX paths relative to it, in a stable order.

    Directory links are not followed. Strings and scandir entries rather than Path
    objects: on a layer of tens of thousands of files the difference is measurable.
    """
    try:
        with os.scandir(top) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        entry_rel = f"{rel}/{entry.name}" if rel else entry.name
        if entry.is_dir(follow_symlinks=False):
            if entry.name != "__pycache__":
                yield from _walk_files(entry.path, entry_rel, follow_file_links=follow_file_links)
        elif entry.is_file(follow_symlinks=follow_file_links):
            yield entry, entry_rel


def _is_executable(entry: os.DirEntry[str]) -> bool:
    try:
        return bool(entry.stat(follow_symlinks=False).st_mode & 0o111)
    except OSError:
        return False


def _is_inside(real_path: str, real_dir: str) -> bool:
    return real_path.startswith(real_dir.rstrip("/") + "/")


def _read_elf_quietly(path: Path) -> ELFInfo | None:
    try:
        return read_elf(path)
    except (ELFError, OSError):
        return None
