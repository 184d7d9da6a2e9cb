"""Resolving one layer with uv and turning uv's output into a layer lock.

uv does the resolution (`uv pip compile --universal`, pylock output); this module
prepares its inputs (requirements, lower-layer pins as constraints, index settings,
the previous lock as preferences) and post-processes the result for the layer's
target platforms: irrelevant packages dropped, markers simplified, wheels filtered
to the targets, every target checked to have a wheel, lower-layer packages marked
as provided below, local wheel paths made relative to the lock.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import tomlkit
from packaging.markers import Marker
from packaging.tags import Tag
from packaging.utils import NormalizedName

from .._util.uv import run_uv
from ..errors import LockError
from ..names import BuildName
from ..platforms import TargetPlatform, wheel_tags
from ..spec.stack import LayerSpec, StackSpec
from .pylock import LockedPackage, LockedWheel, parse_pylock_data, with_shared

__all__ = [
    "LowerPin",
    "ResolveRequest",
    "Targets",
    "resolve_layer",
]


@dataclass(frozen=True)
class LowerPin:
    """A package a lower layer installs (the constraint an upper layer must meet)."""

    layer: BuildName
    package: LockedPackage


@dataclass(frozen=True)
class ResolveRequest:
    stack: StackSpec
    layer: LayerSpec
    lower: Sequence[LowerPin]  # own packages of every lower layer, highest priority first
    previous: Sequence[LockedPackage] | None  # preferences: keep these pins if possible
    lock_dir: Path  # where the lock will live (local wheel paths are relative to it)
    workdir: Path
    upgrade: bool = False
    upgrade_packages: Sequence[str] = ()
    local_wheels: Sequence[Path] = ()
    use_index: bool = True
    exclude_newer: str | None = None


@dataclass(frozen=True)
class Targets:
    """The platforms a layer is locked for, with its Python version and OS targets."""

    layer: LayerSpec
    marker_envs: Mapping[TargetPlatform, dict[str, str]] = field(init=False)
    tags: Mapping[TargetPlatform, frozenset[Tag]] = field(init=False)
    local_build_tags: Mapping[TargetPlatform, frozenset[Tag]] = field(init=False)

    def __post_init__(self) -> None:
        runtime = self.layer.runtime_spec
        envs = {
            p: p.marker_environment(runtime.py_version, runtime.implementation)
            for p in self.layer.platforms
        }
        object.__setattr__(self, "marker_envs", envs)
        tags = {p: self._tags(p, local_build=False) for p in self.layer.platforms}
        object.__setattr__(self, "tags", tags)
        local = {p: self._tags(p, local_build=True) - tags[p] for p in self.layer.platforms}
        object.__setattr__(self, "local_build_tags", local)

    def _tags(self, platform: TargetPlatform, *, local_build: bool) -> frozenset[Tag]:
        runtime = self.layer.runtime_spec
        return frozenset(
            wheel_tags(
                platform,
                runtime.py_version,
                runtime.implementation,
                self.layer.linux_target,
                self.layer.macosx_target,
                local_build=local_build,
            )
        )

    def matching(self, marker: Marker | None) -> list[TargetPlatform]:
        if marker is None:
            return list(self.layer.platforms)
        return [p for p, env in self.marker_envs.items() if marker.evaluate(env)]

    def installable(self, wheel: LockedWheel, platform: TargetPlatform) -> bool:
        tags = self.tags[platform]
        if any(t in tags for t in wheel.tags) or self.local_build(wheel, platform):
            return True
        # PyPy ABI tags (pypy311_pp73) cannot be derived without the interpreter
        runtime = self.layer.runtime_spec
        return runtime.implementation == "pypy" and any(
            t.interpreter.startswith("pp") and t.platform in {x.platform for x in tags}
            for t in wheel.tags
        )

    def local_build(self, wheel: LockedWheel, platform: TargetPlatform) -> bool:
        """A wheel tagged `linux_<arch>` for exactly this platform, from a local directory.

        That is how `pip wheel`, setuptools and meson-python tag a C extension built on
        the machine itself: no index may publish one, and it only runs on machines like
        the build host, but a local build is the user's deliberate choice (venvstacks
        takes them too). Only from --local-wheels, only for the platform it names.
        """
        if not _is_local(wheel):
            return False
        tags = self.local_build_tags[platform]
        return any(t in tags for t in wheel.tags)

    def environment_markers(self) -> list[str]:
        """One PEP 508 marker per target platform (the lock's `environments`)."""
        result = []
        for env in self.marker_envs.values():
            result.append(
                f"sys_platform == '{env['sys_platform']}' and "
                f"platform_machine == '{env['platform_machine']}'"
            )
        return result


def resolve_layer(request: ResolveRequest) -> list[LockedPackage]:
    """Resolve `request.layer`; raise `LockError` naming the layer on any failure."""
    request.workdir.mkdir(parents=True, exist_ok=True)
    output = request.workdir / "pylock.toml"
    _write_inputs(request, output)
    args = _compile_args(request, output)
    proc = run_uv(args, what=f"locking {request.layer.build_name}", error=LockError, check=False)
    if proc.returncode != 0:
        raise LockError(_explain_failure(request, proc.stderr or proc.stdout))
    raw_packages = tomllib.loads(output.read_text("utf-8")).get("packages", [])
    return _postprocess(request, raw_packages)


def _write_inputs(request: ResolveRequest, output: Path) -> None:
    layer, stack = request.layer, request.stack
    indexes = _layer_indexes(stack, layer)
    project: dict[str, Any] = {
        "project": {
            "name": f"venvlayers-lock-{_safe(layer.build_name)}",
            "version": "0",
            "dependencies": [str(r) for r in layer.requirements],
        }
    }
    uv_tool: dict[str, Any] = {}
    if indexes:
        uv_tool["index"] = indexes
    # [tool.uv.sources] applies to every layer; a layer's package_indexes take precedence
    sources = {**stack.uv.package_indexes, **layer.package_indexes}
    if sources:
        uv_tool["sources"] = {pkg: {"index": ix} for pkg, ix in sorted(sources.items())}
    if uv_tool:
        project["tool"] = {"uv": uv_tool}
    (request.workdir / "pyproject.toml").write_text(tomlkit.dumps(project), "utf-8")

    config = {k: v for k, v in stack.uv.settings.items() if k != "exclude-newer"}
    if request.exclude_newer:
        config["exclude-newer"] = request.exclude_newer
    if indexes:
        config["index"] = indexes
    config["no-build"] = True
    (request.workdir / "uv.toml").write_text(tomlkit.dumps(config), "utf-8")

    constraints = [pin.package.pin for pin in request.lower]
    (request.workdir / "constraints.txt").write_text(
        "".join(f"{line}\n" for line in constraints), "utf-8"
    )
    _write_preferences(output, request.previous or ())


def _layer_indexes(stack: StackSpec, layer: LayerSpec) -> list[dict[str, Any]]:
    """The stack's indexes, the layer's `priority_indexes` first (and made non-explicit)."""
    named = stack.uv.named_indexes
    first = [dict(named[n], explicit=False) for n in layer.priority_indexes]
    rest = [dict(ix) for ix in stack.uv.indexes if ix.get("name") not in layer.priority_indexes]
    return first + rest


def _write_preferences(output: Path, previous: Sequence[LockedPackage]) -> None:
    """uv prefers the pins of an existing output file: give it the previous lock's pins."""
    if not previous:
        output.unlink(missing_ok=True)
        return
    doc: dict[str, Any] = {"lock-version": "1.0", "created-by": "venvlayers"}
    doc["packages"] = [
        {"name": p.name, "version": str(p.version)}
        | ({"marker": str(p.marker)} if p.marker is not None else {})
        for p in previous
    ]
    output.write_text(tomlkit.dumps(doc), "utf-8")


def _compile_args(request: ResolveRequest, output: Path) -> list[str]:
    runtime = request.layer.runtime_spec
    args = [
        "pip",
        "compile",
        str(request.workdir / "pyproject.toml"),
        "--universal",
        # any interpreter will do: the target version comes from --python-version
        "--python",
        sys.executable,
        "--python-version",
        runtime.py_version,
        "--format",
        "pylock.toml",
        "--output-file",
        str(output),
        "--no-header",
        "--config-file",
        str(request.workdir / "uv.toml"),
        "--constraints",
        str(request.workdir / "constraints.txt"),
        "--no-build",
        "--quiet",
        "--color",
        "never",
    ]
    for directory in request.local_wheels:
        args += ["--find-links", str(directory)]
    if not request.use_index:
        args.append("--no-index")
    if request.upgrade:
        args.append("--upgrade")
    for name in request.upgrade_packages:
        args += ["--upgrade-package", name]
    return args


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", name).lower()


# -- post-processing ------------------------------------------------------------------------


def _postprocess(
    request: ResolveRequest, raw_packages: list[dict[str, Any]]
) -> list[LockedPackage]:
    layer = request.layer
    targets = Targets(layer)
    source_only: list[str] = []
    for raw in raw_packages:
        raw.pop("sdist", None)  # wheels only: never build from source
        for key in ("archive", "directory", "vcs"):
            if key in raw:
                source_only.append(str(raw.get("name")))
    document = {"lock-version": "1.0", "created-by": "uv", "packages": raw_packages}
    parsed = parse_pylock_data(document, f"uv output for {layer.build_name}")
    lower_by_name: dict[NormalizedName, list[LowerPin]] = {}
    for pin in request.lower:
        lower_by_name.setdefault(pin.package.name, []).append(pin)

    result: list[LockedPackage] = []
    missing: dict[str, list[TargetPlatform]] = {}
    for package in parsed:
        platforms = targets.matching(package.marker)
        if not platforms:
            continue  # only needed on platforms this layer does not target
        marker = None if len(platforms) == len(layer.platforms) else package.marker
        had_wheels = bool(package.wheels)
        wheels = tuple(
            _relative_wheel(w, request)
            for w in _one_per_file(package.wheels)
            if any(targets.installable(w, p) for p in platforms)
        )
        package = replace(package, marker=marker, wheels=wheels)
        if _provided_below(package, platforms, lower_by_name, targets):
            # kept complete (wheels and all) but never installed by this layer
            result.append(with_shared(package))
            continue
        if package.name in source_only or not had_wheels:
            raise LockError(
                f"{layer.build_name}: {package.name} {package.version} has no wheel, only "
                "sources; venvlayers installs wheels only (build one and pass --local-wheels, "
                "or require a version that publishes wheels)"
            )
        lacking = [p for p in platforms if not any(targets.installable(w, p) for w in wheels)]
        if lacking:
            missing[f"{package.name} {package.version}"] = lacking
        result.append(package)
    if missing:
        raise LockError(_missing_wheels_message(layer, missing))
    return result


def local_build_wheels(layer: LayerSpec, packages: Sequence[LockedPackage]) -> list[str]:
    """File names of the locally built (`linux_<arch>`) wheels a layer lock takes."""
    targets = Targets(layer)
    return sorted(
        wheel.filename
        for package in packages
        if not package.shared
        for wheel in package.wheels
        if any(targets.local_build(wheel, p) for p in layer.platforms)
    )


def _one_per_file(wheels: Sequence[LockedWheel]) -> list[LockedWheel]:
    """One entry per wheel file: an index URL beats a local copy of the same file.

    A wheel found both in --local-wheels and on an index is the same file (same
    sha256); recording the URL keeps the lock portable, and builds still use the local
    copy when they are given the directory holding it.
    """
    chosen: dict[str, LockedWheel] = {}
    for wheel in wheels:
        best = chosen.get(wheel.sha256)
        if best is None or (_is_local(best) and not _is_local(wheel)):
            chosen[wheel.sha256] = wheel
    return [w for w in wheels if chosen[w.sha256] is w]


def _is_local(wheel: LockedWheel) -> bool:
    return wheel.url is None or wheel.url.startswith("file:")


def _provided_below(
    package: LockedPackage,
    platforms: list[TargetPlatform],
    lower_by_name: Mapping[NormalizedName, list[LowerPin]],
    targets: Targets,
) -> bool:
    """True if on every platform that needs it a lower layer installs this exact version."""
    pins = [p for p in lower_by_name.get(package.name, []) if p.package.version == package.version]
    if not pins:
        return False
    for platform in platforms:
        env = targets.marker_envs[platform]
        if not any(p.package.marker is None or p.package.marker.evaluate(env) for p in pins):
            return False
    return True


def _relative_wheel(wheel: LockedWheel, request: ResolveRequest) -> LockedWheel:
    """Local wheels are recorded relative to the lock file, never as absolute paths."""
    location: Path | None = None
    if wheel.url and wheel.url.startswith("file:"):
        location = Path(unquote(urlsplit(wheel.url).path))
    elif wheel.path:
        location = Path(wheel.path)
        if not location.is_absolute():
            location = request.workdir / location
    if location is None:
        return wheel
    relative = os.path.relpath(location.resolve(), request.lock_dir.resolve())
    return replace(wheel, url=None, path=Path(relative).as_posix())


def _missing_wheels_message(layer: LayerSpec, missing: Mapping[str, list[TargetPlatform]]) -> str:
    lacking = {p for plats in missing.values() for p in plats}
    details = "; ".join(f"{pkg} for {', '.join(plats)}" for pkg, plats in sorted(missing.items()))
    working = [str(p) for p in layer.platforms if p not in lacking]
    if working:
        fix = f"set platforms = {working!r} for this layer, or pin versions that have wheels"
    else:
        fix = "pin versions that publish wheels for these platforms"
    return f"{layer.build_name}: no wheel for {details}; {fix}"


# -- explaining failures ----------------------------------------------------------------------


def _explain_failure(request: ResolveRequest, message: str) -> str:
    """Turn uv's resolver report into one line; name the lower layer of a conflict."""
    layer = request.layer.build_name
    summary = _uv_summary(message)
    for pin in request.lower:
        name = pin.package.name
        pattern = re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", re.IGNORECASE)
        if not pattern.search(message):
            continue
        wanted = _requirement_on(name, message, str(pin.package.version))
        want_text = f" but this layer needs {wanted}" if wanted else ""
        return (
            f"{layer}: conflicts with lower layer {pin.layer} over {name}: {pin.layer} pins "
            f"{name}=={pin.package.version}{want_text}; change one layer's requirements "
            f"(uv: {summary})"
        )
    hint = _local_wheel_hint(request, message)
    return f"{layer}: cannot be locked: {summary}{hint}"


def _local_wheel_hint(request: ResolveRequest, message: str) -> str:
    """If the previous lock took a package uv now cannot find from a local wheel, say so."""
    for package in request.previous or ():
        if package.name in message.lower() and any(w.path for w in package.wheels):
            return (
                f"; the previous lock took {package.name} from a local wheel: pass the "
                "directory holding it with --local-wheels"
            )
    return ""


def _requirement_on(name: str, message: str, pinned_version: str) -> str | None:
    """The requirement in uv's report that disagrees with the lower layer's pin."""
    spec = r"([<>=!~]=?[^\s,;]+(?:,\s*[<>=!~]=?[^\s,;]+)*)"
    for match in re.finditer(
        rf"([\w.\-]+(?:==[\w.]+)?) depends? on {re.escape(name)}{spec}", message, re.IGNORECASE
    ):
        if pinned_version not in match.group(2):
            return f"{name}{match.group(2)} (required by {match.group(1)})"
    for match in re.finditer(rf"you require {re.escape(name)}{spec}", message, re.IGNORECASE):
        if pinned_version not in match.group(1):
            return f"{name}{match.group(1)} (required directly)"
    return None


def _uv_summary(message: str) -> str:
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.lower().startswith("warning:")]
    lines = [re.sub(r"^(error|cause|hint):\s*", "", ln, flags=re.IGNORECASE) for ln in lines]
    text = " ".join(lines[:8])
    text = re.sub(r"\s+", " ", text).replace("× ", "").replace("╰─▶ ", "")
    return text[:600] + ("..." if len(text) > 600 else "")
