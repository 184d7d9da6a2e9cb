"""Locks written by venvstacks 0.8: recognising them, and adopting those that still match.

venvstacks keeps a layer's lock in the same files as we do (`pylock.<layer>.toml`,
`.meta.json`, `packages-<layer>.txt`, plus a `requirements-<layer>.in` cache of the
declared requirements) but hashes differently, and lists packages provided by a lower
layer without wheels. Its metadata records, in its own hash formats:

- `requirements_hash`: the lock's packages (`name==version ; marker from index`) and
  wheel hashes, sorted;
- `lock_input_hash`: the declared requirements, normalised and sorted;
- `other_inputs_hash`: `py_version=X.Y`, `linux_target=...` and `macosx_target=...`
  when set, then the runtime's build name and the frameworks' names (layered only);
- `version_inputs_hash`: `env_name=...`, `is_versioned_layer=...`, then the launch
  and support module hashes of an application.

Every hash is sha256 over the plain concatenation of those strings. A venvstacks lock
is *adopted* (valid, pins, `lock_version` and `locked_at` kept) when its file still
hashes to its recorded `requirements_hash`, its other three hashes are what venvstacks
would compute for the spec now, its packages agree with the lower layers' current
pins, and it fits the layer's platforms (each package relevant to some but not all of
them keeps its marker, and has a wheel for every platform it is needed on).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from packaging.markers import Marker
from packaging.version import Version

from .._util.proc import run
from ..errors import VenvLayersError
from ..spec.stack import ApplicationSpec, LayeredSpec, LayerSpec, StackSpec
from .pylock import SHARED_MARKER_VALUE, LockedPackage
from .resolve import LowerPin, Targets

__all__ = [
    "ADOPTED",
    "VenvstacksLock",
    "adoption_problem",
    "fill_shared_wheels",
    "read_venvstacks_lock",
]

_LOG = logging.getLogger(__name__)

ADOPTED = "adopted the venvstacks lock"

_SHARED_CLAUSE = f"sys_platform == '{SHARED_MARKER_VALUE}'"
_SHARED_SUFFIX = f" and {_SHARED_CLAUSE}"


def _vs_hash(items: Iterable[str]) -> str:
    """venvstacks' `hash_strings`: sha256 over the strings, concatenated as they are."""
    h = hashlib.sha256()
    for item in items:
        h.update(item.encode())
    return f"sha256:{h.hexdigest()}"


@dataclass(frozen=True)
class VenvstacksLock:
    """A lock file whose metadata venvstacks wrote (its requirements_hash matches)."""

    metadata: Mapping[str, Any]


def read_venvstacks_lock(pylock: Path, metadata: Mapping[str, Any] | None) -> VenvstacksLock | None:
    """The lock at `pylock` as venvstacks wrote it, or None if venvstacks did not.

    Recognised by content, not by a header: the metadata's `requirements_hash` is
    venvstacks' hash of this very file (so an edited file is not taken either).
    """
    if metadata is None or not isinstance(metadata.get("requirements_hash"), str):
        return None
    try:
        data = tomllib.loads(pylock.read_text("utf-8"))
        digest = requirements_hash(data)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return None  # not a lock venvstacks could have hashed (InvalidMarker is a ValueError)
    return VenvstacksLock(metadata) if digest == metadata["requirements_hash"] else None


def requirements_hash(data: Mapping[str, Any]) -> str:
    """venvstacks' `requirements_hash` of a parsed `pylock.toml` document."""
    items: list[str] = []
    for raw in data.get("packages", []):
        marker = _marker_text(str(raw.get("marker", "")))
        suffix = f" ; {marker}" if marker else ""
        pin = f"{raw['name']}=={Version(str(raw['version']))}{suffix}"
        items.append(f"{pin} from {raw.get('index', 'unspecified index')}")
        for wheel in raw.get("wheels", ()):
            name = _wheel_name(wheel)
            for algorithm, digest in wheel["hashes"].items():
                items.append(f"{name}:{algorithm}:{digest}")
    return _vs_hash(sorted(items))


def _marker_text(raw: str) -> str:
    """The marker as venvstacks normalises it, without its `from_lower_layer` clause."""
    if not raw:
        return ""
    text = str(Marker(raw)).replace('"', "'")
    if SHARED_MARKER_VALUE not in text:
        return text
    if text == _SHARED_CLAUSE:
        return ""
    return text.removeprefix("(").removesuffix(_SHARED_SUFFIX).removesuffix(")")


def _wheel_name(wheel: Mapping[str, Any]) -> str:
    if wheel.get("name"):
        return str(wheel["name"])
    if wheel.get("path"):
        return PurePosixPath(str(wheel["path"]).replace("\\", "/")).name
    url = urlsplit(str(wheel.get("url", "")))
    path = unquote(url.path) if url.scheme == "file" else url.path
    return PurePosixPath(path).name


# -- what venvstacks would record for the spec now -------------------------------------------


def _raw_layer(stack: StackSpec, layer: LayerSpec) -> Mapping[str, Any]:
    """The layer's table as written (venvstacks hashes some fields as spelled)."""
    try:
        data = tomllib.loads(stack.path.read_text("utf-8"))
        table = data[layer.category.value][layer.index]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return {}
    return table if isinstance(table, Mapping) else {}


def lock_input_hash(layer: LayerSpec) -> str:
    return _vs_hash(sorted(str(r) for r in layer.requirements))


def other_inputs_hash(stack: StackSpec, layer: LayerSpec) -> str:
    raw = _raw_layer(stack, layer)
    items = [f"py_version={layer.runtime_spec.py_minor}"]
    for key in ("linux_target", "macosx_target"):
        if raw.get(key):
            items.append(f"{key}={raw[key]}")
    if isinstance(layer, LayeredSpec):
        items.append(layer.runtime.build_name)
        items.extend(fw.name for fw in layer.frameworks)
    return _vs_hash(items)


def version_inputs_hash(stack: StackSpec, layer: LayerSpec) -> str:
    items = [f"env_name={layer.build_name}", f"is_versioned_layer={layer.versioned}"]
    if isinstance(layer, ApplicationSpec):
        source_filter = _SourceFilter.for_spec(stack.spec_dir)
        # venvstacks 0.8 sorts support modules by their path as written in the spec
        # before hashing (and publishing) them; venvlayers keeps the spec's order for
        # what it publishes, and sorts here only to reproduce venvstacks' hash
        written = _raw_layer(stack, layer).get("support_modules")
        if isinstance(written, list) and all(isinstance(m, str) for m in written):
            support = [stack.spec_dir / m for m in sorted(written)]
        else:
            support = sorted(layer.support_modules)
        for module in (layer.launch_module, *support):
            items.append(module_hash(module, source_filter))
    return _vs_hash(items)


def module_hash(path: Path, source_filter: _SourceFilter) -> str:
    """venvstacks' hash of a launch or support module (a file, or a package directory)."""
    if path.is_file():
        h = hashlib.sha256()
        h.update(path.name.encode())
        h.update(_file_hash(path).encode())
        return f"sha256:{h.hexdigest()}"
    h = hashlib.sha256()
    for directory, subdirs, files in source_filter.walk(path):
        h.update(directory.name.encode())
        subdirs.sort()
        for name in sorted(files):
            h.update(name.encode())
            h.update(_file_hash(directory / name).encode())
    return f"sha256/{h.hexdigest()}"


def _file_hash(path: Path) -> str:
    if not path.exists():
        return ""
    with path.open("rb", buffering=0) as f:
        return f"sha256:{hashlib.file_digest(f, 'sha256').hexdigest()}"


@dataclass(frozen=True)
class _SourceFilter:
    """What venvstacks leaves out of a package module: git's ignores, else `__pycache__`.

    venvstacks uses the git repository whose `.git` directory is at or above the spec's
    directory; without one it only skips `__pycache__` directories.
    """

    repo: Path | None

    @classmethod
    def for_spec(cls, spec_dir: Path) -> _SourceFilter:
        for candidate in (spec_dir, *spec_dir.parents):
            if (candidate / ".git").is_dir():
                return cls(candidate)
        return cls(None)

    def walk(self, top: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
        if self.repo is None or shutil.which("git") is None:
            for directory, subdirs, files in os.walk(top):
                here = Path(directory)
                if here.name == "__pycache__":
                    continue
                subdirs[:] = [d for d in subdirs if d != "__pycache__"]
                files[:] = [f for f in files if f != "__pycache__"]
                yield here, subdirs, files
            return
        if not top.is_relative_to(self.repo) or self._ignored(top.parent, [top.name]):
            return
        for directory, subdirs, files in os.walk(top):
            here = Path(directory)
            subdirs[:] = sorted(set(subdirs) - self._ignored(here, subdirs))
            files[:] = sorted(set(files) - self._ignored(here, files))
            yield here, subdirs, files

    def _ignored(self, directory: Path, names: Sequence[str]) -> set[str]:
        ignored = {n for n in names if n.startswith(".git")}
        rest = [str(directory / n) for n in names if n not in ignored]
        if not rest or self.repo is None:
            return ignored
        try:
            proc = run(
                ["git", "check-ignore", "-z", "--stdin"],
                what="checking .gitignore rules",
                cwd=self.repo,
                input_text="\0".join(rest),
                timeout=120,
                check=False,
            )
        except (VenvLayersError, OSError) as exc:
            _LOG.debug("git check-ignore failed (%s): nothing ignored", exc)
            return ignored
        return ignored | {os.path.basename(p) for p in proc.stdout.split("\0") if p}


# -- adoption ------------------------------------------------------------------------------


def adoption_problem(
    stack: StackSpec,
    layer: LayerSpec,
    found: VenvstacksLock,
    packages: Sequence[LockedPackage],
    lower: Sequence[LowerPin],
) -> str | None:
    """Why this venvstacks lock cannot be adopted as it is; None if it can."""
    meta = found.metadata
    if meta.get("lock_input_hash") != lock_input_hash(layer):
        return "requirements changed since venvstacks locked this layer"
    if meta.get("other_inputs_hash") != other_inputs_hash(stack, layer):
        return "the runtime, OS targets or lower layers changed since venvstacks locked this layer"
    if layer.versioned and meta.get("version_inputs_hash") != version_inputs_hash(stack, layer):
        return "versioned layer inputs (name or launch modules) changed since venvstacks locked it"
    if not isinstance(meta.get("lock_version", 1), int) or not isinstance(
        meta.get("locked_at"), str
    ):
        return "the venvstacks lock metadata has no valid lock_version or locked_at"
    return _platform_problem(layer, packages) or _lower_problem(layer, packages, lower)


def _platform_problem(layer: LayerSpec, packages: Sequence[LockedPackage]) -> str | None:
    """The lock must be what venvstacks writes for exactly these platforms.

    venvstacks drops a package needed on none of the layer's platforms and the marker
    of one needed on all of them, and records no platform list, so a marker that
    matches none or all of the platforms shows the lock was made for others. A package
    without a wheel for a platform it is needed on cannot be installed there.
    """
    targets = Targets(layer)
    missing: list[str] = []
    for package in packages:
        platforms = targets.matching(package.marker)
        if package.marker is not None and len(platforms) in (0, len(layer.platforms)):
            return (
                f"the venvstacks lock was made for other platforms ({package.name} has marker "
                f"{package.marker}); relock"
            )
        if package.shared:
            continue
        for platform in platforms:
            if not any(targets.installable(w, platform) for w in package.wheels):
                missing.append(f"{package.name} {package.version} for {platform}")
    if missing:
        return f"the venvstacks lock has no wheel of {'; '.join(missing[:5])}"
    return None


def _lower_problem(
    layer: LayerSpec, packages: Sequence[LockedPackage], lower: Sequence[LowerPin]
) -> str | None:
    """Packages provided below must be the lower layers' current pins, and only those."""
    targets = Targets(layer)
    by_name: dict[str, list[LowerPin]] = {}
    for pin in lower:
        by_name.setdefault(pin.package.name, []).append(pin)
    for package in packages:
        pins = by_name.get(package.name, [])
        platforms = targets.matching(package.marker)
        below = [
            p
            for p in pins
            if any(
                p.package.marker is None or p.package.marker.evaluate(targets.marker_envs[x])
                for x in platforms
            )
        ]
        if package.shared:
            same = [p for p in below if p.package.version == package.version]
            if not same:
                return (
                    f"{package.name}=={package.version} is no longer pinned by a lower layer; "
                    "relock"
                )
        elif below:
            other = below[0]
            return (
                f"lower layer {other.layer} now pins {other.package.name}=={other.package.version}"
                f" (this lock has {package.version}); relock"
            )
    return None


def fill_shared_wheels(
    packages: Sequence[LockedPackage], lower: Sequence[LowerPin]
) -> list[LockedPackage]:
    """Shared entries get the wheels of the lower layer's pin (our locks are complete)."""
    wheels = {(p.package.name, p.package.version): p.package.wheels for p in lower}
    result = []
    for package in packages:
        if package.shared and not package.wheels:
            package = replace(package, wheels=wheels.get((package.name, package.version), ()))
        result.append(package)
    return result
