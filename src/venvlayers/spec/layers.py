"""The layer types a stack spec yields: frozen, typed, one object per layer per load."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, TypedDict

from packaging.requirements import Requirement
from packaging.utils import NormalizedName

from ..names import BuildName, LayerCategory, LayerName
from ..platforms import LinuxTarget, TargetPlatform

__all__ = [
    "ApplicationSpec",
    "CommonArgs",
    "FrameworkSpec",
    "LayerSpec",
    "LayeredArgs",
    "LayeredSpec",
    "RuntimeSpec",
]


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


class CommonArgs(TypedDict):
    """The constructor arguments every layer type takes (checked by mypy at each call)."""

    name: LayerName
    index: int
    requirements: tuple[Requirement, ...]
    platforms: tuple[TargetPlatform, ...]
    versioned: bool
    linux_target: LinuxTarget | None
    macosx_target: tuple[int, int] | None
    dynlib_exclude: tuple[str, ...]
    package_indexes: Mapping[NormalizedName, str]
    priority_indexes: tuple[str, ...]
    index_overrides: Mapping[str, str]


class LayeredArgs(CommonArgs):
    """The constructor arguments of framework and application layers."""

    runtime: RuntimeSpec
    frameworks: tuple[FrameworkSpec, ...]
    declared_frameworks: tuple[LayerName, ...]
