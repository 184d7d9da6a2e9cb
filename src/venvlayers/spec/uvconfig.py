"""The stack's common uv settings: `[tool.uv]` in the spec, else `venvstacks.uv.toml`.

Only what venvlayers itself must understand is validated here (named indexes and
per-package index sources); every other uv setting is passed through to uv, which
checks it itself.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from packaging.utils import NormalizedName, canonicalize_name

__all__ = [
    "UV_CONFIG_FILE",
    "UvConfig",
    "load_uv_config",
    "parse_timestamp",
]

UV_CONFIG_FILE = "venvstacks.uv.toml"

# Settings venvlayers controls itself: a user value would break locking or building.
_RESERVED = {
    "constraint-dependencies": "venvlayers derives constraints from lower layers",
    "environments": "venvlayers locks for each layer's `platforms` and checks their wheels",
    "required-environments": "venvlayers checks each layer's `platforms` have wheels",
    "managed": None,
    "package": None,
    "dev-dependencies": None,
    "workspace": None,
}


@dataclass(frozen=True)
class UvConfig:
    """The stack-wide uv settings, split into what we interpret and what we pass on."""

    source: Path | None = None
    settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    indexes: tuple[Mapping[str, Any], ...] = ()
    package_indexes: Mapping[NormalizedName, str] = field(
        default_factory=lambda: MappingProxyType({})
    )

    @property
    def named_indexes(self) -> dict[str, Mapping[str, Any]]:
        return {str(ix["name"]): ix for ix in self.indexes if ix.get("name")}

    @property
    def exclude_newer(self) -> datetime | None:
        raw = self.settings.get("exclude-newer")
        return parse_timestamp(raw) if isinstance(raw, str) else None


def parse_timestamp(text: str) -> datetime | None:
    """An RFC 3339 timestamp or a plain date (as uv accepts), in UTC; None if invalid."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def load_uv_config(
    spec_path: Path,
    spec_data: Mapping[str, Any],
    error: Callable[[str], None],
    warn: Callable[[str], None],
) -> UvConfig:
    """Read the uv settings for the spec at `spec_path`, reporting problems via callbacks."""
    tool = spec_data.get("tool")
    raw: Any = None
    source: Path | None = None
    where = f"{spec_path.name} [tool.uv]"
    if isinstance(tool, Mapping) and "uv" in tool:
        raw, source = tool["uv"], spec_path
    else:
        config_path = spec_path.parent / UV_CONFIG_FILE
        if config_path.exists():
            where = config_path.name
            try:
                raw = tomllib.loads(config_path.read_text("utf-8"))
            except tomllib.TOMLDecodeError as exc:
                error(f"{config_path.name}: invalid TOML: {exc}")
                return UvConfig()
            except (OSError, UnicodeDecodeError) as exc:
                error(f"{config_path.name}: cannot read: {exc}")
                return UvConfig()
            source = config_path
    if raw is None:
        return UvConfig()
    if not isinstance(raw, Mapping):
        error(f"{where}: must be a table of uv settings")
        return UvConfig()
    settings = dict(raw)
    for key, why in _RESERVED.items():
        if key in settings:
            del settings[key]
            warn(f"{where}: setting {key!r} is ignored ({why or 'not used by venvlayers'})")
    indexes = _read_indexes(settings.pop("index", []), where, error)
    known = {str(ix["name"]) for ix in indexes if ix.get("name")}
    package_indexes = _read_sources(settings.pop("sources", {}), known, where, error)
    if "exclude-newer" in settings and (
        not isinstance(settings["exclude-newer"], str)
        or parse_timestamp(settings["exclude-newer"]) is None
    ):
        error(
            f"{where}: 'exclude-newer' must be an RFC 3339 timestamp such as "
            f"'2025-01-31T00:00:00Z', not {settings['exclude-newer']!r}"
        )
        del settings["exclude-newer"]
    return UvConfig(
        source=source,
        settings=MappingProxyType(settings),
        indexes=tuple(indexes),
        package_indexes=MappingProxyType(package_indexes),
    )


def _read_indexes(raw: Any, where: str, error: Callable[[str], None]) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        error(f"{where}: 'index' must be an array of tables ([[tool.uv.index]])")
        return []
    indexes: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            error(f"{where}: index[{i}] must be a table with at least 'url'")
            continue
        if not isinstance(entry.get("url"), str):
            error(f"{where}: index[{i}] needs a 'url' string")
            continue
        name = entry.get("name")
        if name is not None:
            if not isinstance(name, str) or not name:
                error(f"{where}: index[{i}] 'name' must be a non-empty string")
                continue
            if name in seen:
                error(f"{where}: index[{i}] repeats the index name {name!r}; names must be unique")
                continue
            seen.add(name)
        indexes.append(dict(entry))
    return indexes


def _read_sources(
    raw: Any, known: set[str], where: str, error: Callable[[str], None]
) -> dict[NormalizedName, str]:
    if not isinstance(raw, Mapping):
        error(f"{where}: 'sources' must be a table of package = {{ index = \"name\" }}")
        return {}
    result: dict[NormalizedName, str] = {}
    for package, ref in raw.items():
        index = ref.get("index") if isinstance(ref, Mapping) else None
        if not isinstance(index, str):
            error(
                f'{where}: sources.{package} must name an index ({{ index = "name" }}); '
                "other source kinds are not supported for layered locks"
            )
            continue
        if index not in known:
            error(f"{where}: sources.{package} names unknown index {index!r}{_known(known)}")
            continue
        name = canonicalize_name(package)
        if name in result:
            error(f"{where}: sources lists {name!r} twice (after name normalisation)")
            continue
        result[name] = index
    return result


def _known(names: set[str]) -> str:
    if not names:
        return " (no named [[tool.uv.index]] is defined)"
    return " (known: " + ", ".join(repr(n) for n in sorted(names)) + ")"
