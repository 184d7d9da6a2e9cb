"""Reading and validating stack specs (`venvstacks.toml`, venvstacks 0.8 format).

`StackSpec.load(path)` returns frozen, typed layer specs or raises one `SpecError`
listing every problem found, each naming the file, the layer and the field and saying
what would fix it. Unknown keys are warnings (kept in `StackSpec.warnings` and logged)
that suggest the closest known key.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from ..errors import SpecError
from ..names import LayerCategory, LayerName
from .c3 import c3_linearize
from .fields import LayerFields, LayerReader, Problems, read_launch_modules
from .layers import (
    ApplicationSpec,
    FrameworkSpec,
    LayeredArgs,
    LayeredSpec,
    LayerSpec,
    RuntimeSpec,
)
from .uvconfig import UvConfig, load_uv_config

__all__ = [
    "ApplicationSpec",
    "FrameworkSpec",
    "LayerSpec",
    "LayeredSpec",
    "RuntimeSpec",
    "StackSpec",
]

_LOG = logging.getLogger(__name__)

_TOP_LEVEL_KEYS = ("runtimes", "frameworks", "applications", "tool")

L = TypeVar("L", bound=LayerSpec)
P = TypeVar("P")


@dataclass(frozen=True, eq=False)
class StackSpec:
    """A whole stack spec: its layers by category, in file order, and its uv settings."""

    path: Path
    runtimes: Mapping[LayerName, RuntimeSpec]
    frameworks: Mapping[LayerName, FrameworkSpec]
    applications: Mapping[LayerName, ApplicationSpec]
    uv: UvConfig = field(default_factory=UvConfig)
    warnings: tuple[str, ...] = ()

    @property
    def spec_dir(self) -> Path:
        return self.path.parent

    @property
    def requirements_dir(self) -> Path:
        return self.spec_dir / "requirements"

    def layers(self, *, include_disabled: bool = False) -> list[LayerSpec]:
        """All layers: runtimes, then frameworks, then applications, each in file order."""
        found: list[LayerSpec] = [
            *self.runtimes.values(),
            *self.frameworks.values(),
            *self.applications.values(),
        ]
        return found if include_disabled else [layer for layer in found if layer.enabled]

    def layer(self, build_name: str) -> LayerSpec:
        """The layer with this build name (e.g. `framework-sci`)."""
        for layer in self.layers(include_disabled=True):
            if layer.build_name == build_name:
                return layer
        raise KeyError(build_name)

    def __iter__(self) -> Iterator[LayerSpec]:
        return iter(self.layers())

    @classmethod
    def load(cls, path: str | Path) -> StackSpec:
        """Read and validate the spec at `path`; raise `SpecError` listing every problem."""
        spec_path = Path(path).absolute()
        problems = Problems(spec_path.name)
        data = _read_toml(spec_path)
        for key in data:
            if key not in _TOP_LEVEL_KEYS:
                problems.warn_unknown(f"{spec_path.name}: top-level key", key, _TOP_LEVEL_KEYS)
        uv = load_uv_config(spec_path, data, problems.add, problems.add_warning)
        reader = LayerReader(spec_path, problems, uv)
        layers = _Layers(reader, data)
        runtimes, frameworks = layers.runtimes, layers.frameworks
        applications: dict[LayerName, ApplicationSpec] = {}
        layers.read(LayerCategory.RUNTIMES, layers.runtime, _as_read, runtimes)
        layers.read(LayerCategory.FRAMEWORKS, layers.lower, layers.framework, frameworks)
        layers.read(LayerCategory.APPLICATIONS, layers.app_inputs, layers.app, applications)
        if problems.errors:
            raise SpecError(problems.errors, warnings=problems.warnings)
        for message in problems.warnings:
            _LOG.warning("%s", message)
        return cls(
            path=spec_path,
            runtimes=MappingProxyType(runtimes),
            frameworks=MappingProxyType(frameworks),
            applications=MappingProxyType(applications),
            uv=uv,
            warnings=tuple(problems.warnings),
        )


_Lower = tuple[RuntimeSpec, tuple[FrameworkSpec, ...]]


def _as_read(fields: LayerFields, raw: Mapping[str, Any], layer: L) -> L:
    """A layer whose object is complete once its fields are read (a runtime)."""
    return layer


class _Layers:
    """Reads the layer tables of one spec, category by category, lower categories first.

    Each table goes through the same steps: its common fields, what must hold before
    its name can be claimed (`prepare`: the runtime and frameworks it names, its
    modules), a unique name, then the layer object (`make`). A step that finds a
    problem reports it and drops the layer, so later layers are not blamed for it.
    """

    def __init__(self, reader: LayerReader, data: Mapping[str, Any]) -> None:
        self.reader = reader
        self.data = data
        # the layers read so far, where upper categories find the ones they name
        self.runtimes: dict[LayerName, RuntimeSpec] = {}
        self.frameworks: dict[LayerName, FrameworkSpec] = {}
        self.framework_names = _declared_names(data.get("frameworks"))
        reader.declared_runtimes = _declared_names(data.get("runtimes"))

    def read(
        self,
        category: LayerCategory,
        prepare: Callable[[LayerFields, Mapping[str, Any]], P | None],
        make: Callable[[LayerFields, Mapping[str, Any], P], L | None],
        found: dict[LayerName, L],
    ) -> None:
        """Add the valid layers of `category` to `found`, each as soon as it is read."""
        for index, raw in self.reader.entries(self.data, category):
            fields = self.reader.common_fields(category, index, raw)
            if fields is None:
                continue
            prepared = prepare(fields, raw)
            if prepared is None or not self._unique(fields, found):
                continue
            layer = make(fields, raw, prepared)
            if layer is not None:
                found[fields.name] = layer

    def _unique(self, fields: LayerFields, seen: Mapping[LayerName, LayerSpec]) -> bool:
        if fields.name in seen:
            self.reader.problems.add(
                f"{fields.where}, field 'name': {fields.category.singular} name "
                f"{fields.name!r} is already used by {fields.category.value}"
                f"[{seen[fields.name].index}]; names must be unique within a category"
            )
            return False
        return True

    def runtime(self, fields: LayerFields, raw: Mapping[str, Any]) -> RuntimeSpec | None:
        reader = self.reader
        impl = reader.python_implementation(fields, raw)
        archive, sha256 = reader.python_archive(fields, raw)
        platforms = reader.platforms(fields, raw, lower=())
        package_indexes = reader.own_package_indexes(fields, raw, inherited={})
        if impl is None or platforms is None or package_indexes is None or not fields.ok:
            return None
        return RuntimeSpec(
            **fields.common_args(platforms, package_indexes),
            python_implementation=impl,
            python_archive=archive,
            python_archive_sha256=sha256,
        )

    def lower(self, fields: LayerFields, raw: Mapping[str, Any]) -> _Lower | None:
        return _resolve_lower(
            self.reader, fields, raw, self.runtimes, self.frameworks, self.framework_names
        )

    def app_inputs(
        self, fields: LayerFields, raw: Mapping[str, Any]
    ) -> tuple[_Lower, tuple[Path, tuple[Path, ...]]] | None:
        lower = self.lower(fields, raw)
        modules = read_launch_modules(self.reader, fields, raw)
        return None if lower is None or modules is None else (lower, modules)

    def framework(
        self, fields: LayerFields, raw: Mapping[str, Any], lower: _Lower
    ) -> FrameworkSpec | None:
        args = self._layered_args(fields, raw, lower)
        return FrameworkSpec(**args) if fields.ok else None

    def app(
        self,
        fields: LayerFields,
        raw: Mapping[str, Any],
        inputs: tuple[_Lower, tuple[Path, tuple[Path, ...]]],
    ) -> ApplicationSpec | None:
        lower, (launch_module, support_modules) = inputs
        args = self._layered_args(fields, raw, lower)
        if not fields.ok:
            return None
        return ApplicationSpec(**args, launch_module=launch_module, support_modules=support_modules)

    def _layered_args(
        self, fields: LayerFields, raw: Mapping[str, Any], lower: _Lower
    ) -> LayeredArgs:
        runtime, frameworks = lower
        below: tuple[LayerSpec, ...] = (*frameworks, runtime)
        reader = self.reader
        platforms = reader.platforms(fields, raw, lower=below)
        inherited = reader.inherited_package_indexes(fields, raw, below)
        package_indexes = (
            reader.own_package_indexes(fields, raw, inherited) if inherited is not None else None
        )
        return LayeredArgs(
            **fields.common_args(platforms or (), package_indexes or {}),
            runtime=runtime,
            frameworks=frameworks,
            declared_frameworks=tuple(LayerName(n) for n in raw.get("frameworks", ())),
        )


def _read_toml(spec_path: Path) -> dict[str, Any]:
    try:
        text = spec_path.read_text("utf-8")
    except FileNotFoundError:
        raise SpecError(
            f"{spec_path}: no such stack spec; create it or pass the spec path "
            "(default: ./venvstacks.toml)"
        ) from None
    except IsADirectoryError:
        raise SpecError(f"{spec_path}: is a directory; pass the path of the spec file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{spec_path}: cannot read the stack spec: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{spec_path.name}: invalid TOML: {exc}") from None


def _declared_names(raw: Any) -> list[str]:
    """Framework names in file order (for telling forward references from typos)."""
    if not isinstance(raw, list):
        return []
    return [e["name"] for e in raw if isinstance(e, Mapping) and isinstance(e.get("name"), str)]


def _resolve_lower(
    reader: LayerReader,
    fields: LayerFields,
    raw: Mapping[str, Any],
    runtimes: Mapping[LayerName, RuntimeSpec],
    frameworks: Mapping[LayerName, FrameworkSpec],
    fw_names: list[str],
) -> tuple[RuntimeSpec, tuple[FrameworkSpec, ...]] | None:
    """Check `runtime` / `frameworks` and return the runtime and the C3-ordered frameworks."""
    has_rt, has_fw = "runtime" in raw, "frameworks" in raw
    where = fields.where
    if has_rt == has_fw:
        what = "both" if has_rt else "neither"
        reader.problems.add(
            f"{where}: sets {what} of 'runtime' and 'frameworks'; set exactly one "
            '(runtime = "NAME" or frameworks = ["NAME", ...])'
        )
        return None
    if has_rt:
        name = raw["runtime"]
        if not isinstance(name, str):
            reader.problems.add(f"{where}, field 'runtime': must be a runtime name (a string)")
            return None
        runtime = runtimes.get(LayerName(name))
        if runtime is None and name in reader.declared_runtimes:
            return None  # defined but invalid: its own error is already reported
        if runtime is None:
            reader.problems.add(
                f"{where}, field 'runtime': unknown runtime {name!r}"
                f"{_known(reader.declared_runtimes)}"
            )
            return None
        return runtime, ()
    return _resolve_frameworks(reader, fields, raw["frameworks"], frameworks, fw_names)


def _resolve_frameworks(
    reader: LayerReader,
    fields: LayerFields,
    raw_names: Any,
    frameworks: Mapping[LayerName, FrameworkSpec],
    fw_names: list[str],
) -> tuple[RuntimeSpec, tuple[FrameworkSpec, ...]] | None:
    where = f"{fields.where}, field 'frameworks'"
    problems = reader.problems
    if not isinstance(raw_names, list) or not all(isinstance(n, str) for n in raw_names):
        problems.add(f"{where}: must be a list of framework names")
        return None
    if not raw_names:
        problems.add(f"{where}: is empty; list at least one framework or set 'runtime' instead")
        return None
    if len(set(raw_names)) != len(raw_names):
        problems.add(f"{where}: lists a framework more than once")
        return None
    declared: list[FrameworkSpec] = []
    for name in raw_names:
        fw = frameworks.get(LayerName(name))
        if fw is not None:
            declared.append(fw)
        elif fields.category is LayerCategory.FRAMEWORKS and name == fields.name:
            problems.add(f"{where}: framework {name!r} cannot depend on itself")
        elif fields.category is LayerCategory.FRAMEWORKS and name in fw_names:
            problems.add(
                f"{where}: framework {name!r} is defined later in the file; a framework may "
                "only depend on frameworks listed before it (move it up; cycles are not allowed)"
            )
        elif name in fw_names:
            # defined, but invalid: its own error is already reported
            return None
        else:
            problems.add(f"{where}: unknown framework {name!r}{_known(fw_names)}")
    if len(declared) != len(raw_names):
        return None
    runtime = declared[0].runtime
    for fw in declared[1:]:
        if fw.runtime is not runtime:
            problems.add(
                f"{where}: frameworks must share one runtime, but {declared[0].name!r} uses "
                f"{runtime.name!r} and {fw.name!r} uses {fw.runtime.name!r}"
            )
            return None
    try:
        ordered = c3_linearize(declared, lambda fw: fw.frameworks, lambda fw: fw.name)
    except ValueError as exc:
        problems.add(f"{where}: {exc}; reorder the list to agree with the frameworks' own order")
        return None
    return runtime, tuple(ordered)


def _known(names: Iterable[str]) -> str:
    listed = list(dict.fromkeys(names))
    if not listed:
        return " (none is defined)"
    return " (defined: " + ", ".join(repr(str(n)) for n in listed) + ")"
