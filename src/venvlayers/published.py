"""Published stacks as readers see them: the layers `venvstacks.json` lists, checked.

A published stack is the directory `venvlayers publish` writes: layer archives beside
`__venvstacks__/venvstacks.json` (see `layout` for the names). Deploy, pull and push
all read it through `parse_layers`, which checks every entry in full (names that could
leave a target, sizes, digests, archive names) and reports all problems together, so a
bad source is refused before anything is fetched or written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .archives.common import ArchiveFormat
from .errors import DeployError
from .names import BuildName, DeployName, LayerCategory
from .platforms import TargetPlatform

__all__ = [
    "PublishedLayer",
    "PublishedStack",
    "check_archive_name",
    "check_dir_name",
    "join_problems",
    "parse_layers",
]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MAX_PROBLEMS = 5


def check_dir_name(name: object) -> str:
    """`name` if it can be a layer directory in a target, else raise `ValueError(reason)`.

    Names come from metadata we did not necessarily write; one that is not a plain
    file name could make a deploy write outside its target. Names starting with a dot
    are ours (`.venvlayers`, staging directories).
    """
    if not isinstance(name, str) or not name:
        raise ValueError("must be a non-empty string")
    if name in (".", "..") or any(c in name for c in "/\\\x00:"):
        raise ValueError(f"{name!r} is not a plain directory name")
    if name.startswith("."):
        raise ValueError(f"{name!r} starts with a dot")
    if len(name.encode("utf-8")) > 200:
        raise ValueError(f"{name[:20]!r}... is too long")
    return name


@dataclass(frozen=True)
class PublishedLayer:
    """One layer of `venvstacks.json`, checked: enough to fetch, verify and install it."""

    category: LayerCategory
    layer_name: BuildName
    install_target: DeployName
    runtime_layer: DeployName
    required_layers: tuple[DeployName, ...]
    target_platform: str
    archive_name: str
    archive_size: int
    archive_sha256: str
    lock_version: int
    launch_module: str | None
    metadata: Mapping[str, Any] = field(compare=False, repr=False)

    @property
    def short_name(self) -> str:
        """The spec's name for the layer (`one` for `app-one`)."""
        return self.layer_name.removeprefix(self.category.prefix)

    @property
    def lower(self) -> tuple[DeployName, ...]:
        """install_targets of every layer this one needs beside it, runtime last."""
        if self.category is LayerCategory.RUNTIMES:
            return ()
        return (*self.required_layers, self.runtime_layer)

    def describe(self) -> str:
        return str(self.install_target)


@dataclass(frozen=True)
class PublishedStack:
    """Every layer a source's `venvstacks.json` lists, in file order."""

    where: str
    layers: tuple[PublishedLayer, ...]
    raw: bytes = field(default=b"", repr=False)
    """The exact bytes of `venvstacks.json`, which a signature covers."""
    signature: bytes | None = field(default=None, repr=False)
    """`venvstacks.json.sig` beside it, if there is one."""
    signature_where: str = ""


# -- metadata ---------------------------------------------------------------------------


class _Bad(Exception):
    """A field of one layer entry is missing or wrong."""


def parse_layers(data: object, where: str) -> tuple[PublishedLayer, ...]:
    """Every layer entry of a `venvstacks.json` document; all problems reported together."""
    if not isinstance(data, dict) or not isinstance(data.get("layers"), dict):
        raise DeployError(f"{where}: not a stack manifest (no 'layers' object)")
    layers: list[PublishedLayer] = []
    problems: list[str] = []
    for category in LayerCategory:
        entries = data["layers"].get(category.value, [])
        if not isinstance(entries, list):
            problems.append(f"layers.{category.value} is not a list")
            continue
        for index, entry in enumerate(entries):
            label = f"layers.{category.value}[{index}]"
            if isinstance(entry, dict) and isinstance(entry.get("layer_name"), str):
                label += f" ({entry['layer_name']})"
            try:
                layers.append(_parse_layer(category, entry))
            except _Bad as exc:
                problems.append(f"{label}: {exc}")
    if problems:
        raise DeployError(f"{where}: {join_problems(problems)}")
    return tuple(layers)


def join_problems(problems: Sequence[str]) -> str:
    shown = "; ".join(problems[:_MAX_PROBLEMS])
    more = len(problems) - _MAX_PROBLEMS
    return f"{shown} (and {more} more)" if more > 0 else shown


def _parse_layer(category: LayerCategory, entry: object) -> PublishedLayer:
    if not isinstance(entry, dict):
        raise _Bad("not an object")
    if "archive_name" not in entry:
        raise _Bad(
            "has no archive fields (an export directory?); deploy needs the output of "
            "`venvlayers publish`"
        )
    sha = _get(entry, "archive_hashes", dict).get("sha256")
    if not isinstance(sha, str) or not _SHA256.match(sha):
        raise _Bad("'archive_hashes.sha256' must be 64 lowercase hex digits")
    archive_name = _get(entry, "archive_name", str)
    if check_archive_name(archive_name) is None:
        raise _Bad(f"'archive_name' {archive_name!r} is not a plain archive file name")
    size = _get(entry, "archive_size", int)
    if size < 0:
        raise _Bad("'archive_size' is negative")
    platform = _get(entry, "target_platform", str)
    if platform not in {str(p) for p in TargetPlatform}:
        raise _Bad(f"unknown 'target_platform' {platform!r}")
    required = entry.get("required_layers", [])
    if not isinstance(required, list):
        raise _Bad("'required_layers' is not a list")
    launch = entry.get("app_launch_module")
    if category is LayerCategory.APPLICATIONS:
        if not isinstance(launch, str) or not all(p.isidentifier() for p in launch.split(".")):
            raise _Bad(f"'app_launch_module' {launch!r} is not a module name")
    else:
        launch = None
    version = entry.get("lock_version", 1)
    return PublishedLayer(
        category=category,
        layer_name=BuildName(_get(entry, "layer_name", str)),
        install_target=DeployName(_dir_name(entry, "install_target")),
        runtime_layer=DeployName(_dir_name(entry, "runtime_layer")),
        required_layers=tuple(DeployName(_checked(n, "required_layers")) for n in required),
        target_platform=platform,
        archive_name=archive_name,
        archive_size=size,
        archive_sha256=sha,
        lock_version=version if isinstance(version, int) and not isinstance(version, bool) else 1,
        launch_module=launch,
        metadata=dict(entry),
    )


def check_archive_name(name: str) -> ArchiveFormat | None:
    """The format of a plain archive file name from metadata, or None if it is unsafe."""
    try:
        check_dir_name(name)
    except ValueError:
        return None
    return ArchiveFormat.from_path(Path(name))


def _get(entry: Mapping[str, Any], key: str, kind: type[Any]) -> Any:
    value = entry.get(key)
    if value is None:
        raise _Bad(f"{key!r} is missing")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Bad(f"{key!r} must be a {kind.__name__}, not {type(value).__name__}")
    return value


def _dir_name(entry: Mapping[str, Any], key: str) -> str:
    return _checked(_get(entry, key, str), key)


def _checked(value: object, key: str) -> str:
    try:
        return check_dir_name(value)
    except ValueError as exc:
        raise _Bad(f"{key!r}: {exc}") from None
