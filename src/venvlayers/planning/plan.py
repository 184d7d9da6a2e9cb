"""The plan of work for build and publish: which layers, with which lock, runtime and layout.

Planning is where the spec and the locks meet: a `LayerPlan` holds everything needed to
build or publish one layer, decided before anything is built, and knows the hash of all
the inputs its build depends on, so build can skip an up-to-date layer and publish can
refuse one whose build no longer matches its lock.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from .._util.hashing import hash_strings
from ..errors import BuildError
from ..layout import BUILD_STAMP, POSTINSTALL_SOURCE, Layout
from ..locking import LockState, evaluate_locks
from ..names import BuildName, DeployName
from ..platforms import TargetPlatform, build_platform
from ..progress import NULL_REPORTER, Reporter
from ..runtimes import RuntimeArchive, obtain_runtime
from ..selection import Selection
from ..spec import ApplicationSpec, LayerSpec, RuntimeSpec, StackSpec, appmodules
from ..spec.graph import select_layers

__all__ = [
    "BUILD_FORMAT",
    "LayerPlan",
    "StackPlan",
    "plan_selected",
    "plan_stack",
    "read_stamp",
]

# bump when the layout of built layers changes, so older builds are redone
BUILD_FORMAT = 3  # 3: postinstall.py compiles bytecode


@functools.cache
def _postinstall_hash() -> str:
    """Every layer carries this file: a new one is a new build (no bump to forget)."""
    return hashlib.sha256(POSTINSTALL_SOURCE.read_bytes()).hexdigest()


@dataclass(frozen=True)
class LayerPlan:
    """Everything needed to build one layer, decided before anything is built."""

    layer: LayerSpec
    deploy_name: DeployName
    lock: LockState
    layout: Layout
    runtime: RuntimeArchive
    lower: tuple[LayerPlan, ...]  # sys.path order
    build_root: Path
    spec_dir: Path  # .gitignore files above launch modules are read up to here

    @property
    def build_name(self) -> BuildName:
        return self.layer.build_name

    @property
    def path(self) -> Path:
        return self.build_root / self.layer.build_name

    @cached_property
    def inputs_hash(self) -> str:
        """Everything a finished build of this layer depends on (computed once: it may ask git)."""
        items = [
            f"format:{BUILD_FORMAT}",
            f"postinstall:{_postinstall_hash()}",
            f"platform:{self.layout.platform}",
            f"deploy_name:{self.deploy_name}",
            f"lock:{self.lock.file_hash}",
            f"runtime:{self.runtime.sha256}",
            f"dynlib_exclude:{','.join(self.layer.dynlib_exclude)}",
            *(f"lower:{low.deploy_name}:{low.inputs_hash}" for low in self.lower),
        ]
        if isinstance(self.layer, ApplicationSpec):
            sources = [self.layer.launch_module, *self.layer.support_modules]
            digest = appmodules.modules_hash(sources, boundary=self.spec_dir)
            items.append(f"modules:{digest}")
        return hash_strings(items)


@dataclass(frozen=True)
class StackPlan:
    """The plans of the layers a run works on, in stack order, and how they were chosen."""

    selection: Selection[LayerSpec]
    plans: dict[BuildName, LayerPlan]
    """Plans of the selected layers this machine can build, and of the layers below them."""
    ordered: tuple[LayerPlan, ...]
    """The selected layers this machine can build, lower layers first."""
    build_root: Path


def plan_selected(
    stack: StackSpec,
    build_dir: Path | None,
    include: Sequence[str],
    *,
    allow_missing: bool = False,
    dependencies: bool = True,
    derived: bool = False,
    reporter: Reporter = NULL_REPORTER,
) -> StackPlan:
    """Select layers as `--include` says and plan those this machine's platform can build.

    Layers whose platforms exclude this machine are skipped with a note, as venvstacks
    does: each platform's layers are built on a machine of that platform.
    """
    build_root = (build_dir or stack.spec_dir / "_build").absolute()
    selection = select_layers(
        stack,
        include or None,
        dependencies=dependencies,
        derived=derived,
        allow_missing=allow_missing,
    )
    here = build_platform()
    layers = [x for x in selection.layers if here in x.platforms]
    for layer in selection.layers:
        if here not in layer.platforms:
            reporter.note(f"{layer.build_name}: skipped here (its platforms exclude {here})")
    if selection.layers and not layers:
        raise BuildError(f"none of the selected layers targets this machine's platform ({here})")
    plans = plan_stack(stack, layers, build_root, reporter=reporter)
    ordered = tuple(plans[x.build_name] for x in layers)
    return StackPlan(selection, plans, ordered, build_root)


def read_stamp(layer_dir: Path) -> dict[str, Any] | None:
    """The finished-build record of a layer directory, or None."""
    try:
        data = json.loads((layer_dir / BUILD_STAMP).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def plan_stack(
    stack: StackSpec,
    layers: Sequence[LayerSpec],
    build_root: Path,
    *,
    reporter: Reporter = NULL_REPORTER,
) -> dict[BuildName, LayerPlan]:
    """Plans for `layers` and everything below them; locks must be valid."""
    platform = build_platform()
    states = evaluate_locks(stack)
    runtimes: dict[BuildName, RuntimeArchive] = {}
    plans: dict[BuildName, LayerPlan] = {}

    def plan(layer: LayerSpec) -> LayerPlan:
        if layer.build_name in plans:
            return plans[layer.build_name]
        if platform not in layer.platforms:
            raise BuildError(
                f"{layer.build_name}: does not target this machine's platform ({platform}); "
                f"its platforms are {', '.join(layer.platforms)}"
            )
        state = states[layer.build_name]
        if not state.valid or state.deploy_name is None:
            raise BuildError(
                f"{layer.build_name}: no valid lock ({state.problem}); run `venvlayers lock` "
                "or build with --lock-if-needed"
            )
        runtime_spec = layer.runtime_spec
        if runtime_spec.build_name not in runtimes:
            runtimes[runtime_spec.build_name] = _obtain(stack, runtime_spec, platform, reporter)
        lower = tuple(plan(low) for low in layer.lower_layers)
        result = LayerPlan(
            layer=layer,
            deploy_name=state.deploy_name,
            lock=state,
            layout=Layout(platform, runtime_spec.py_version, isinstance(layer, RuntimeSpec)),
            runtime=runtimes[runtime_spec.build_name],
            lower=lower,
            build_root=build_root,
            spec_dir=stack.spec_dir,
        )
        plans[layer.build_name] = result
        return result

    for layer in layers:
        plan(layer)
    return plans


def _obtain(
    stack: StackSpec, runtime: RuntimeSpec, platform: TargetPlatform, reporter: Reporter
) -> RuntimeArchive:
    return obtain_runtime(
        runtime.implementation,
        runtime.py_version,
        platform,
        archive=runtime.python_archive,
        archive_sha256=runtime.python_archive_sha256,
        spec_dir=stack.spec_dir,
        reporter=reporter,
    )
