"""Field-level validation of layer tables, collecting every problem with its location.

Kept apart from `stack.py` so that the spec types stay readable; every check here
reports through `Problems` instead of raising, so one run reports all mistakes.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from ..names import LayerCategory, LayerName
from ..platforms import (
    LinuxTarget,
    TargetPlatform,
    parse_linux_target,
    parse_macosx_target,
    suggest_platform,
)
from .layers import CommonArgs, LayerSpec
from .uvconfig import UvConfig

__all__ = [
    "KNOWN_KEYS",
    "LayerFields",
    "LayerReader",
    "Problems",
    "read_launch_modules",
]

_COMMON_KEYS = (
    "name",
    "requirements",
    "platforms",
    "versioned",
    "linux_target",
    "macosx_target",
    "dynlib_exclude",
    "package_indexes",
    "index_overrides",
    "priority_indexes",
)
_LEGACY_IGNORED = ("build_requirements",)
KNOWN_KEYS: dict[LayerCategory, tuple[str, ...]] = {
    LayerCategory.RUNTIMES: (
        *_COMMON_KEYS,
        "python_implementation",
        "python_archive",
        "python_archive_sha256",
    ),
    LayerCategory.FRAMEWORKS: (*_COMMON_KEYS, "runtime", "frameworks"),
    LayerCategory.APPLICATIONS: (
        *_COMMON_KEYS,
        "runtime",
        "frameworks",
        "launch_module",
        "support_modules",
    ),
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+@-]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_IMPLEMENTATIONS = ("cpython", "pypy")


class Problems:
    """Errors and warnings found while reading one spec file."""

    def __init__(self, file_label: str) -> None:
        self.file_label = file_label
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def add(self, message: str) -> None:
        self.errors.append(message)

    def add_warning(self, message: str) -> None:
        self.warnings.append(message)

    def warn_unknown(self, where: str, key: str, known: Sequence[str]) -> None:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        self.add_warning(f"{where} {key!r} is unknown and ignored{hint}")


@dataclass
class LayerFields:
    """The category-independent fields of one layer table, as read so far."""

    category: LayerCategory
    index: int
    name: LayerName
    where: str
    error_count_at_start: int
    problems: Problems
    requirements: tuple[Requirement, ...] = ()
    versioned: bool = False
    linux_target: LinuxTarget | None = None
    macosx_target: tuple[int, int] | None = None
    dynlib_exclude: tuple[str, ...] = ()
    priority_indexes: tuple[str, ...] = ()
    index_overrides: Mapping[str, str] | None = None

    @property
    def ok(self) -> bool:
        """No error was reported for this layer so far."""
        return len(self.problems.errors) == self.error_count_at_start

    def common_args(
        self,
        platforms: tuple[TargetPlatform, ...],
        package_indexes: Mapping[NormalizedName, str],
    ) -> CommonArgs:
        """The fields every layer type takes, with the platforms and indexes read for it."""
        return CommonArgs(
            name=self.name,
            index=self.index,
            requirements=self.requirements,
            platforms=platforms,
            versioned=self.versioned,
            linux_target=self.linux_target,
            macosx_target=self.macosx_target,
            dynlib_exclude=self.dynlib_exclude,
            package_indexes=MappingProxyType(dict(package_indexes)),
            priority_indexes=self.priority_indexes,
            index_overrides=dict(self.index_overrides or {}),
        )


class LayerReader:
    """Reads the fields of layer tables of one spec, reporting into `problems`."""

    def __init__(self, spec_path: Path, problems: Problems, uv: UvConfig) -> None:
        self.spec_path = spec_path
        self.problems = problems
        self.uv = uv
        self.file = spec_path.name
        self.declared_runtimes: list[str] = []

    # -- structure ---------------------------------------------------------------------------

    def entries(
        self, data: Mapping[str, Any], category: LayerCategory
    ) -> Iterator[tuple[int, Mapping[str, Any]]]:
        raw = data.get(category.value, [])
        if not isinstance(raw, list):
            self.problems.add(
                f"{self.file}: '{category.value}' must be an array of tables "
                f"([[{category.value}]]), not a {type(raw).__name__}"
            )
            return
        for index, entry in enumerate(raw):
            if not isinstance(entry, Mapping):
                self.problems.add(
                    f"{self.file}: {category.value}[{index}] must be a table "
                    f"([[{category.value}]]), not a {type(entry).__name__}"
                )
                continue
            yield index, entry

    def common_fields(
        self, category: LayerCategory, index: int, raw: Mapping[str, Any]
    ) -> LayerFields | None:
        start = len(self.problems.errors)
        name = raw.get("name")
        label = f"{self.file}: {category.value}[{index}]"
        if not isinstance(name, str) or not name:
            self.problems.add(f"{label}: missing 'name' (a non-empty string naming the layer)")
            return None
        fields = LayerFields(
            category, index, LayerName(name), f"{label} {name!r}", start, self.problems
        )
        self._check_name(fields)
        self._check_keys(fields, raw)
        fields.requirements = self._requirements(fields, raw)
        fields.versioned = self._bool(fields, raw, "versioned")
        fields.linux_target = self._parsed(fields, raw, "linux_target", parse_linux_target)
        fields.macosx_target = self._parsed(fields, raw, "macosx_target", parse_macosx_target)
        fields.dynlib_exclude = self._strings(fields, raw, "dynlib_exclude")
        fields.priority_indexes = self._index_names(fields, raw)
        fields.index_overrides = self._index_overrides(fields, raw)
        return fields

    def _check_name(self, fields: LayerFields) -> None:
        name = fields.name
        if not _NAME_RE.match(name):
            self._error(
                fields,
                "name",
                f"{name!r} is not a usable layer name; use letters, digits and . _ - + @ "
                "(it becomes a directory name)",
            )
        if fields.category is LayerCategory.RUNTIMES:
            for prefix in ("framework-", "app-"):
                if name.startswith(prefix):
                    self._error(
                        fields,
                        "name",
                        f"runtime names may not start with {prefix!r} (reserved for "
                        f"{'frameworks' if prefix == 'framework-' else 'applications'}); "
                        "rename the runtime",
                    )

    def _check_keys(self, fields: LayerFields, raw: Mapping[str, Any]) -> None:
        known = KNOWN_KEYS[fields.category]
        for key in raw:
            if key in known:
                continue
            if key in _LEGACY_IGNORED:
                self.problems.add_warning(
                    f"{fields.where}: field {key!r} is obsolete and ignored (remove it)"
                )
            elif key == "fully_versioned_name" and fields.category is LayerCategory.RUNTIMES:
                continue  # handled (with its own warning) by python_implementation()
            else:
                self.problems.warn_unknown(f"{fields.where}: key", key, known)

    # -- field types -------------------------------------------------------------------------

    def _error(self, fields: LayerFields, field: str, message: str) -> None:
        self.problems.add(f"{fields.where}, field {field!r}: {message}")

    def _bool(self, fields: LayerFields, raw: Mapping[str, Any], key: str) -> bool:
        value = raw.get(key, False)
        if not isinstance(value, bool):
            self._error(fields, key, f"must be true or false, not {value!r}")
            return False
        return value

    def _strings(self, fields: LayerFields, raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self._error(fields, key, f'must be a list of strings, e.g. {key} = ["..."]')
            return ()
        return tuple(value)

    def _parsed(self, fields: LayerFields, raw: Mapping[str, Any], key: str, parse: Any) -> Any:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self._error(fields, key, f"must be a string, not {value!r}")
            return None
        try:
            return parse(value)
        except ValueError as exc:
            self._error(fields, key, str(exc))
            return None

    def _requirements(self, fields: LayerFields, raw: Mapping[str, Any]) -> tuple[Requirement, ...]:
        result: list[Requirement] = []
        seen: dict[NormalizedName, str] = {}
        for text in self._strings(fields, raw, "requirements"):
            try:
                req = Requirement(text)
            except InvalidRequirement as exc:
                detail = str(exc).splitlines()[0]
                self._error(
                    fields, "requirements", f"{text!r} is not a valid PEP 508 requirement: {detail}"
                )
                continue
            if req.url:
                self._error(
                    fields,
                    "requirements",
                    f"{text!r} is a direct URL reference; layers install wheels from indexes "
                    "or --local-wheels only",
                )
                continue
            key = canonicalize_name(req.name)
            if key in seen and not req.marker:
                self.problems.add_warning(
                    f"{fields.where}: requirement {text!r} repeats {seen[key]!r}"
                )
            seen[key] = text
            result.append(req)
        return tuple(result)

    # -- runtimes ----------------------------------------------------------------------------

    def python_implementation(self, fields: LayerFields, raw: Mapping[str, Any]) -> str | None:
        value = raw.get("python_implementation")
        legacy = raw.get("fully_versioned_name")
        if legacy is not None:
            if value is not None:
                self._error(
                    fields,
                    "fully_versioned_name",
                    "is the obsolete name of 'python_implementation' and both are set; "
                    "remove 'fully_versioned_name'",
                )
                return None
            self.problems.add_warning(
                f"{fields.where}: field 'fully_versioned_name' is obsolete; "
                "rename it to 'python_implementation'"
            )
            value = legacy
        if value is None:
            self._error(fields, "python_implementation", 'is required, e.g. "cpython@3.12.7"')
            return None
        if not isinstance(value, str):
            self._error(fields, "python_implementation", f"must be a string, not {value!r}")
            return None
        impl, at, version = value.partition("@")
        problem = None
        if not at or impl not in _IMPLEMENTATIONS:
            problem = f"must look like 'cpython@3.12.7' or 'pypy@3.10.14', not {value!r}"
        else:
            try:
                parsed = Version(version)
            except InvalidVersion:
                parsed = None
            if parsed is None or len(parsed.release) != 3 or parsed.local or parsed.dev:
                problem = (
                    f"needs a full X.Y.Z Python version, not {version!r} (e.g. '{impl}@3.12.7')"
                )
        if problem:
            self._error(fields, "python_implementation", problem)
            return None
        return value

    def python_archive(
        self, fields: LayerFields, raw: Mapping[str, Any]
    ) -> tuple[str | None, str | None]:
        archive, sha256 = raw.get("python_archive"), raw.get("python_archive_sha256")
        if archive is None and sha256 is None:
            return None, None
        if not isinstance(archive, str) or not archive:
            self._error(fields, "python_archive", "must be a path or URL of a runtime archive")
            return None, None
        if not isinstance(sha256, str) or not _SHA256_RE.match(sha256.lower()):
            self._error(
                fields,
                "python_archive_sha256",
                "must be the archive's sha256 (64 hex digits); an explicit runtime archive "
                "is only used when its hash is known",
            )
            return None, None
        return archive, sha256.lower()

    # -- platforms and indexes ---------------------------------------------------------------

    def platforms(
        self, fields: LayerFields, raw: Mapping[str, Any], lower: Sequence[LayerSpec]
    ) -> tuple[TargetPlatform, ...] | None:
        supported = set(TargetPlatform.all())
        for layer in lower:
            supported &= set(layer.platforms)
        if "platforms" not in raw:
            return tuple(p for p in TargetPlatform.all() if p in supported)
        value = raw["platforms"]
        names = [str(p) for p in TargetPlatform.all()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self._error(fields, "platforms", f"must be a list of platform names from {names}")
            return None
        chosen: list[TargetPlatform] = []
        for item in value:
            try:
                chosen.append(TargetPlatform(item))
            except ValueError:
                close = suggest_platform(item)
                hint = f" (did you mean {close!r}?)" if close else f"; choose from {names}"
                self._error(fields, "platforms", f"unknown platform {item!r}{hint}")
                return None
        for platform in chosen:
            if platform in supported:
                continue
            lacking = [ly.build_name for ly in lower if platform not in ly.platforms]
            self._error(
                fields,
                "platforms",
                f"{platform} is not supported by lower layer(s) {', '.join(lacking)}; remove it "
                "or add it to those layers' platforms",
            )
            return None
        return tuple(p for p in TargetPlatform.all() if p in chosen)

    def _index_names(self, fields: LayerFields, raw: Mapping[str, Any]) -> tuple[str, ...]:
        names = self._strings(fields, raw, "priority_indexes")
        known = self.uv.named_indexes
        for name in names:
            if name not in known:
                self._error(fields, "priority_indexes", f"unknown index {name!r}{_indexes(known)}")
        return names

    def _index_overrides(
        self, fields: LayerFields, raw: Mapping[str, Any]
    ) -> Mapping[str, str] | None:
        value = raw.get("index_overrides", {})
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            self._error(
                fields, "index_overrides", 'must be a table: { lower-index = "this-layer-index" }'
            )
            return None
        known = self.uv.named_indexes
        for key, target in value.items():
            for name in (key, target):
                if name not in known:
                    self._error(
                        fields, "index_overrides", f"unknown index {name!r}{_indexes(known)}"
                    )
        return dict(value)

    def inherited_package_indexes(
        self, fields: LayerFields, raw: Mapping[str, Any], lower: Sequence[LayerSpec]
    ) -> dict[NormalizedName, str] | None:
        """Package-to-index pins of the lower layers, checked for conflicts between them."""
        merged: dict[NormalizedName, tuple[str, str]] = {}
        overrides = fields.index_overrides or {}
        # each framework's map already includes what it inherited from the runtime
        frameworks = [x for x in lower if x.category is LayerCategory.FRAMEWORKS]
        for layer in frameworks or lower:  # priority order (C3)
            for package, index in layer.package_indexes.items():
                if package not in merged:
                    merged[package] = (index, layer.build_name)
                    continue
                chosen, chosen_from = merged[package]
                if chosen != index and overrides.get(index) != chosen:
                    self._error(
                        fields,
                        "index_overrides",
                        f"lower layers disagree on the index for {package!r}: {chosen_from} "
                        f"uses {chosen!r}, {layer.build_name} uses {index!r}; to accept "
                        f'{chosen!r}, set index_overrides = {{ {index} = "{chosen}" }}',
                    )
                    return None
        return {package: index for package, (index, _src) in merged.items()}

    def own_package_indexes(
        self,
        fields: LayerFields,
        raw: Mapping[str, Any],
        inherited: Mapping[NormalizedName, str],
    ) -> dict[NormalizedName, str] | None:
        value = raw.get("package_indexes", {})
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            self._error(
                fields, "package_indexes", 'must be a table: { package-name = "index-name" }'
            )
            return None
        known = self.uv.named_indexes
        result = dict(inherited)
        own: dict[NormalizedName, str] = {}
        overrides = fields.index_overrides or {}
        for raw_name, index in value.items():
            package = canonicalize_name(raw_name)
            if index not in known:
                self._error(
                    fields,
                    "package_indexes",
                    f"{raw_name!r} names unknown index {index!r}{_indexes(known)}",
                )
                return None
            if package in own:
                self._error(
                    fields, "package_indexes", f"lists {package!r} twice (after normalisation)"
                )
                return None
            lower_index = inherited.get(package)
            if lower_index not in (None, index) and overrides.get(str(lower_index)) != index:
                self._error(
                    fields,
                    "package_indexes",
                    f"{package!r} comes from {lower_index!r} in a lower layer but from "
                    f"{index!r} here; to allow it, set "
                    f'index_overrides = {{ {lower_index} = "{index}" }}',
                )
                return None
            own[package] = index
        result.update(own)
        return result


def read_launch_modules(
    reader: LayerReader, fields: LayerFields, raw: Mapping[str, Any]
) -> tuple[Path, tuple[Path, ...]] | None:
    """An application's launch module and support modules, checked to exist and not clash."""
    spec_dir = reader.spec_path.parent
    value = raw.get("launch_module")
    if not isinstance(value, str) or not value:
        reader._error(
            fields,
            "launch_module",
            "is required: the path (relative to the spec) of a module file or package "
            'directory to run with `python -m`, e.g. launch_module = "app.py"',
        )
        return None
    launch = _module_path(reader, fields, "launch_module", spec_dir, value)
    support_raw = reader._strings(fields, raw, "support_modules")
    support = [_module_path(reader, fields, "support_modules", spec_dir, s) for s in support_raw]
    if launch is None or any(p is None for p in support):
        return None
    paths = [p for p in support if p is not None]
    stems = [p.stem for p in paths]
    for stem in sorted(set(stems)):
        if stems.count(stem) > 1:
            reader._error(fields, "support_modules", f"two support modules are both named {stem!r}")
            return None
    if launch.stem in stems:
        reader._error(
            fields,
            "support_modules",
            f"a support module is named {launch.stem!r} like the launch module; rename one",
        )
        return None
    # the spec's order, as venvstacks keeps it (published as `app_support_modules`)
    return launch, tuple(paths)


def _module_path(
    reader: LayerReader, fields: LayerFields, key: str, spec_dir: Path, value: str
) -> Path | None:
    path = (spec_dir / value).absolute()
    if not path.exists():
        reader._error(fields, key, f"{value!r} does not exist (relative to {spec_dir})")
        return None
    if path.is_file() and path.suffix != ".py":
        reader._error(fields, key, f"{value!r} must be a .py file or a package directory")
        return None
    if path.is_dir() and key == "launch_module" and not (path / "__main__.py").exists():
        reader._error(
            fields,
            key,
            f"package {value!r} has no __main__.py, so `python -m {path.name}` cannot run it",
        )
        return None
    if not path.stem.isidentifier():
        reader._error(fields, key, f"{value!r}: {path.stem!r} is not a valid Python module name")
        return None
    return path


def _indexes(known: Mapping[str, Any]) -> str:
    if not known:
        return " (no named [[tool.uv.index]] is defined)"
    return " (known: " + ", ".join(repr(n) for n in sorted(known)) + ")"
