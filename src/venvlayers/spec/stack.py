"""Reading and validating stack specs (`venvstacks.toml`, venvstacks 0.8 format).

`StackSpec.load(path)` returns frozen, typed layer specs or raises one `SpecError`
listing every problem found, each naming the file, the layer and the field and saying
what would fix it. Unknown keys are warnings (kept in `StackSpec.warnings` and logged)
that suggest the closest known key.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from packaging.requirements import Requirement
from packaging.utils import NormalizedName

from ..errors import SpecError
from ..names import BuildName, LayerCategory, LayerName
from ..platforms import LinuxTarget, TargetPlatform
from .c3 import c3_linearize
from .fields import LayerFields, LayerReader, Problems, read_launch_modules
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


@dataclass(frozen=True, eq=False, kw_only=True, repr=False)
class LayerSpec:
    """What every layer declares. Identity-compared: one object per layer per load."""

    category: ClassVar[LayerCategory]

    name: LayerName
    index: int  # position in its category's table array, for messages
    requirements: tuple[Requirement, ...]
    platforms: tuple[TargetPlatform, ...]
    versioned: bool = False
    linux_target: LinuxTarget | None = None
    macosx_target: tuple[int, int] | None = None
    dynlib_exclude: tuple[str, ...] = ()
    package_indexes: Mapping[NormalizedName, str] = field(
        default_factory=lambda: MappingProxyType({})
    )
    priority_indexes: tuple[str, ...] = ()
    index_overrides: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def build_name(self) -> BuildName:
        """The layer's folder name in the build and requirements directories."""
        return self.category.build_name(self.name)

    @property
    def enabled(self) -> bool:
        """False for layers disabled with `platforms = []`."""
        return bool(self.platforms)

    @property
    def runtime_spec(self) -> RuntimeSpec:
        raise NotImplementedError

    @property
    def lower_layers(self) -> tuple[LayerSpec, ...]:
        """The layers below this one in `sys.path` order: frameworks (C3), then the runtime."""
        return ()

    def describe(self) -> str:
        return f"{self.category.value}[{self.index}] {self.name!r}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.build_name}>"


@dataclass(frozen=True, eq=False, kw_only=True, repr=False)
class RuntimeSpec(LayerSpec):
    """A runtime layer: a relocatable Python plus packages every upper layer shares."""

    category: ClassVar[LayerCategory] = LayerCategory.RUNTIMES

    python_implementation: str  # "cpython@3.12.7"
    python_archive: str | None = None  # path (relative to the spec) or URL
    python_archive_sha256: str | None = None

    @property
    def implementation(self) -> str:
        """`cpython` or `pypy`."""
        return self.python_implementation.partition("@")[0]

    @property
    def py_version(self) -> str:
        """The full Python version, `X.Y.Z`."""
        return self.python_implementation.partition("@")[2]

    @property
    def py_minor(self) -> str:
        """`X.Y`, as in `lib/pythonX.Y`."""
        return ".".join(self.py_version.split(".")[:2])

    @property
    def runtime_spec(self) -> RuntimeSpec:
        return self


@dataclass(frozen=True, eq=False, kw_only=True, repr=False)
class LayeredSpec(LayerSpec):
    """A layer built as a virtual environment on top of a runtime (and frameworks)."""

    runtime: RuntimeSpec
    frameworks: tuple[FrameworkSpec, ...] = ()  # C3 order: highest priority first
    declared_frameworks: tuple[LayerName, ...] = ()

    @property
    def runtime_spec(self) -> RuntimeSpec:
        return self.runtime

    @property
    def lower_layers(self) -> tuple[LayerSpec, ...]:
        return (*self.frameworks, self.runtime)


@dataclass(frozen=True, eq=False, kw_only=True, repr=False)
class FrameworkSpec(LayeredSpec):
    """A framework layer: large shared packages for several applications."""

    category: ClassVar[LayerCategory] = LayerCategory.FRAMEWORKS


@dataclass(frozen=True, eq=False, kw_only=True, repr=False)
class ApplicationSpec(LayeredSpec):
    """An application layer: a launch module (run with `python -m`) and its packages."""

    category: ClassVar[LayerCategory] = LayerCategory.APPLICATIONS

    launch_module: Path  # absolute: a `.py` file or a package directory
    support_modules: tuple[Path, ...] = ()

    @property
    def launch_module_name(self) -> str:
        return self.launch_module.stem


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

        runtimes: dict[LayerName, RuntimeSpec] = {}
        for index, raw in reader.entries(data, LayerCategory.RUNTIMES):
            fields = reader.common_fields(LayerCategory.RUNTIMES, index, raw)
            if fields is None:
                continue
            runtime = _make_runtime(reader, fields, raw)
            if runtime is not None and _unique(problems, fields, runtimes):
                runtimes[fields.name] = runtime

        frameworks: dict[LayerName, FrameworkSpec] = {}
        fw_names = _declared_names(data.get("frameworks"))
        reader.declared_runtimes = _declared_names(data.get("runtimes"))
        for index, raw in reader.entries(data, LayerCategory.FRAMEWORKS):
            fields = reader.common_fields(LayerCategory.FRAMEWORKS, index, raw)
            if fields is None:
                continue
            deps = _resolve_lower(reader, fields, raw, runtimes, frameworks, fw_names)
            if deps is None or not _unique(problems, fields, frameworks):
                continue
            runtime, fws = deps
            kwargs = _layered_kwargs(reader, fields, runtime, fws, raw)
            if fields.ok:
                frameworks[fields.name] = FrameworkSpec(**kwargs)

        applications: dict[LayerName, ApplicationSpec] = {}
        for index, raw in reader.entries(data, LayerCategory.APPLICATIONS):
            fields = reader.common_fields(LayerCategory.APPLICATIONS, index, raw)
            if fields is None:
                continue
            deps = _resolve_lower(reader, fields, raw, runtimes, frameworks, fw_names)
            modules = read_launch_modules(reader, fields, raw)
            if deps is None or modules is None or not _unique(problems, fields, applications):
                continue
            runtime, fws = deps
            kwargs = _layered_kwargs(reader, fields, runtime, fws, raw)
            if fields.ok:
                applications[fields.name] = ApplicationSpec(
                    **kwargs, launch_module=modules[0], support_modules=modules[1]
                )

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


def _unique(problems: Problems, fields: LayerFields, seen: Mapping[LayerName, Any]) -> bool:
    if fields.name in seen:
        problems.add(
            f"{fields.where}, field 'name': {fields.category.singular} name {fields.name!r} is "
            f"already used by {fields.category.value}[{seen[fields.name].index}]; "
            "names must be unique within a category"
        )
        return False
    return True


def _make_runtime(
    reader: LayerReader, fields: LayerFields, raw: Mapping[str, Any]
) -> RuntimeSpec | None:
    impl = reader.python_implementation(fields, raw)
    archive, sha256 = reader.python_archive(fields, raw)
    platforms = reader.platforms(fields, raw, lower=())
    package_indexes = reader.own_package_indexes(fields, raw, inherited={})
    if impl is None or platforms is None or package_indexes is None or not fields.ok:
        return None
    return RuntimeSpec(
        **fields.common_kwargs(),
        platforms=platforms,
        package_indexes=MappingProxyType(package_indexes),
        python_implementation=impl,
        python_archive=archive,
        python_archive_sha256=sha256,
    )


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


def _layered_kwargs(
    reader: LayerReader,
    fields: LayerFields,
    runtime: RuntimeSpec,
    frameworks: tuple[FrameworkSpec, ...],
    raw: Mapping[str, Any],
) -> dict[str, Any]:
    lower: tuple[LayerSpec, ...] = (*frameworks, runtime)
    platforms = reader.platforms(fields, raw, lower=lower)
    inherited = reader.inherited_package_indexes(fields, raw, lower)
    package_indexes = (
        reader.own_package_indexes(fields, raw, inherited) if inherited is not None else None
    )
    return {
        **fields.common_kwargs(),
        "platforms": platforms or (),
        "package_indexes": MappingProxyType(package_indexes or {}),
        "runtime": runtime,
        "frameworks": frameworks,
        "declared_frameworks": tuple(LayerName(n) for n in raw.get("frameworks", ())),
    }


def _known(names: Iterable[str]) -> str:
    listed = list(dict.fromkeys(names))
    if not listed:
        return " (none is defined)"
    return " (defined: " + ", ".join(repr(str(n)) for n in listed) + ")"
