"""`venvlayers build`: layer environments that chain at run time, relocatable and exact.

- A runtime layer is its runtime archive unpacked, plus its locked packages installed
  into its own site-packages.
- Framework and application layers are virtual environments on their runtime whose
  `bin/python` is a relative symlink into the runtime layer and whose `pyvenv.cfg`
  has no `home` key (CPython then finds its base by following the symlink), so a
  stack directory can be moved. A generated `sitecustomize.py` adds the lower layers'
  site-packages (frameworks in C3 order, then the runtime) with `site.addsitedir`.
- Packages are synced from the lock with uv (hashes required, wheels only, uv's
  cache), so a package dropped from a lock leaves the environment on the next build.
- A build stamp written last records the inputs of a finished build: an unchanged
  layer is skipped, and an interrupted build is never mistaken for a finished one.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .._util.fs import format_json, link_tree, remove_tree, write_atomic, write_if_changed
from ..errors import BuildError
from ..layout import (
    BUILD_STAMP,
    LAYER_CONFIG,
    POSTINSTALL,
    POSTINSTALL_SOURCE,
    SITECUSTOMIZE,
    LayerConfig,
    peer_path,
)
from ..locking.pylock import LockedPackage
from ..names import BuildName, DeployName
from ..planning.plan import BUILD_FORMAT, LayerPlan, StackPlan, plan_selected, read_stamp
from ..progress import NULL_REPORTER, Reporter
from ..runtimes import unpacked_runtime
from ..spec import appmodules
from ..spec.graph import dependency_levels
from ..spec.stack import ApplicationSpec, StackSpec
from . import dynlibs
from .envfiles import refresh_records, relocatable_scripts, sitecustomize_text
from .install import sync_layer
from .wheelcache import WheelTarget

__all__ = ["BuildOptions", "LayerBuildResult", "build_stack"]

T = TypeVar("T")

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildOptions:
    build_dir: Path | None = None  # default: <spec dir>/_build
    include: Sequence[str] = ()
    allow_missing: bool = False
    build_dependencies: bool = False  # with include: bring dependencies up to date too
    build_derived: bool = False  # with include: rebuild layers built on the included ones
    clean: bool = False  # rebuild from scratch
    local_wheels: Sequence[Path] = ()  # where to find local wheels a lock refers to
    jobs: int = 0


@dataclass(frozen=True)
class LayerBuildResult:
    build_name: BuildName
    deploy_name: DeployName
    path: Path
    action: str  # "built" | "unchanged"
    seconds: float
    packages: int


def build_stack(
    stack: StackSpec, options: BuildOptions = BuildOptions(), reporter: Reporter = NULL_REPORTER
) -> list[LayerBuildResult]:
    """Build the selected layers (and any missing layers below them)."""
    work = plan_selected(
        stack,
        options.build_dir,
        options.include,
        allow_missing=options.allow_missing,
        derived=options.build_derived,
        reporter=reporter,
    )
    todo = _layers_to_build(work, options)
    work.build_root.mkdir(parents=True, exist_ok=True)
    _write_aliases(work.build_root, work.plans.values())
    built = _build_layers(todo, options, reporter)
    return [built.get(p.build_name) or _result(p, "unchanged", 0.0) for p in work.ordered]


def _layers_to_build(work: StackPlan, options: BuildOptions) -> list[LayerPlan]:
    """The selected layers that are out of date, and dependencies that were never built.

    A dependency that was built but is out of date is an error unless it was asked
    for: building on top of it would bake its stale state into the upper layer.
    """
    selection = work.selection
    wanted = {x.build_name for x in (*selection.matched, *selection.derived)}
    if options.build_dependencies or not options.include:
        wanted |= {x.build_name for x in selection.dependencies}
    todo: list[LayerPlan] = []
    for plan in work.ordered:
        current = _up_to_date(plan)
        if plan.build_name in wanted:
            if options.clean or not current:
                todo.append(plan)
        elif read_stamp(plan.path) is None:
            todo.append(plan)
        elif not current:
            raise BuildError(
                f"{plan.build_name}: its build is out of date; build it too "
                "(--build-dependencies) before building the layers on top of it"
            )
    return todo


def _build_layers(
    todo: Sequence[LayerPlan], options: BuildOptions, reporter: Reporter
) -> dict[BuildName, LayerBuildResult]:
    """Build `todo` in three phases, so that uv's fixed costs overlap.

    1. every layer directory is prepared (runtimes first: venvs link into them);
    2. all layers' packages are synced in parallel (a layer's sync needs only its
       runtime's interpreter, not the layers below);
    3. layers are finished lowest first (scripts, modules, shared-library links, config,
       build stamp), since linking looks at the finished layers below.
    """
    jobs = options.jobs or min(4, os.cpu_count() or 2)
    results: dict[BuildName, LayerBuildResult] = {}
    started = {plan.build_name: time.monotonic() for plan in todo}
    previous = {plan.build_name: read_stamp(plan.path) or {} for plan in todo}
    build_root = todo[0].build_root if todo else Path()
    with ThreadPoolExecutor(max_workers=jobs) as pool, _Trash(build_root) as trash:

        def each(work: Callable[[LayerPlan], T], plans: Sequence[LayerPlan]) -> list[T]:
            return list(pool.map(work, plans))

        for plan in todo:
            reporter.begin(f"build:{plan.build_name}", f"build {plan.deploy_name}")
        try:
            for is_runtime in (True, False):
                group = [p for p in todo if p.layout.is_runtime is is_runtime]
                each(lambda p: _prepare(p, previous[p.build_name], options.clean, trash), group)
            synced = each(lambda p: _sync(p, options, reporter), todo)
            packages = {p.build_name: x for p, x in zip(todo, synced, strict=True)}
            by_name = {p.build_name: p for p in todo}
            for level in dependency_levels([p.layer for p in todo]):
                plans = [by_name[x.build_name] for x in level]
                each(lambda p: _finish(p, packages[p.build_name], previous[p.build_name]), plans)
                for plan in plans:
                    reporter.end(f"build:{plan.build_name}", "built")
                    seconds = time.monotonic() - started[plan.build_name]
                    results[plan.build_name] = _result(plan, "built", seconds)
        except BaseException:
            for plan in todo:
                if plan.build_name not in results:
                    reporter.end(f"build:{plan.build_name}", "failed")
            raise
    return results


class _Trash:
    """Old layer directories are moved aside at once and deleted off the critical path.

    Deleting a big environment takes longer than building a new one from uv's cache,
    so on POSIX a detached `rm -rf` finishes the job after we return; anything it
    leaves (or an interrupted build leaves) is removed at the next build's start.
    """

    def __init__(self, build_root: Path) -> None:
        self.root = build_root
        self.items: list[Path] = []
        self._lock = threading.Lock()

    def __enter__(self) -> _Trash:
        self.items.extend(self.root.glob(".*.trash-*"))
        return self

    def discard(self, path: Path) -> None:
        with self._lock:
            target = self.root / f".{path.name}.trash-{os.getpid()}-{len(self.items)}"
            os.replace(path, target)
            self.items.append(target)

    def __exit__(self, *exc: object) -> None:
        if not self.items:
            return
        if os.name == "posix" and shutil.which("rm"):
            subprocess.Popen(
                ["rm", "-rf", "--", *map(str, self.items)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            return
        for item in self.items:
            remove_tree(item)


def _write_aliases(build_root: Path, plans: Any) -> None:
    """Versioned layers are also reachable under their deployed name (a relative link)."""
    for plan in plans:
        if plan.deploy_name == plan.build_name:
            continue
        alias = build_root / plan.deploy_name
        for stale in build_root.glob(f"{plan.build_name}@*"):
            if stale.is_symlink() and stale != alias:
                stale.unlink()
        if not (alias.is_symlink() and os.readlink(alias) == plan.build_name):
            if alias.is_symlink() or alias.exists():
                alias.unlink()
            alias.symlink_to(plan.build_name)


def _up_to_date(plan: LayerPlan) -> bool:
    stamp = read_stamp(plan.path)
    return stamp is not None and stamp.get("inputs_hash") == plan.inputs_hash


def _result(plan: LayerPlan, action: str, seconds: float) -> LayerBuildResult:
    stamp = read_stamp(plan.path) or {}
    return LayerBuildResult(
        build_name=plan.build_name,
        deploy_name=plan.deploy_name,
        path=plan.path,
        action=action,
        seconds=seconds,
        packages=len(stamp.get("packages", [])),
    )


def _prepare(plan: LayerPlan, previous: dict[str, Any], clean: bool, trash: _Trash) -> None:
    """Mark the layer unfinished, then make its directory ready for package syncing."""
    (plan.path / BUILD_STAMP).unlink(missing_ok=True)  # the layer now reads as unfinished
    if clean and (plan.path.exists() or plan.path.is_symlink()):
        trash.discard(plan.path)
    if plan.layout.is_runtime:
        _prepare_runtime(plan, previous, trash)
    else:
        _prepare_venv(plan)


def _finish(plan: LayerPlan, packages: list[LockedPackage], previous: dict[str, Any]) -> None:
    """Everything after the package sync; the build stamp is written last."""
    if not plan.layout.windows:
        scripts = relocatable_scripts(plan.path / plan.layout.bin_dir, plan.path)
        refresh_records(plan.path / plan.layout.site_dir, scripts)
    modules: list[str] = []
    if isinstance(plan.layer, ApplicationSpec):
        sources = [plan.layer.launch_module, *plan.layer.support_modules]
        site = plan.path / plan.layout.site_dir
        modules = appmodules.copy_modules(
            sources, site, previous=previous.get("modules", []), boundary=plan.spec_dir
        )
    dynlib_dirs = _link_libraries(plan)
    _write_layer_files(plan, dynlib_dirs)
    record = {
        "build_format": BUILD_FORMAT,
        "deploy_name": plan.deploy_name,
        "inputs_hash": plan.inputs_hash,
        "lock_requirements_hash": plan.lock.file_hash,
        "lock_version": plan.lock.lock_version,
        "modules": modules,
        "packages": sorted(p.pin for p in packages),
        "runtime": {"name": plan.runtime.name, "sha256": plan.runtime.sha256},
    }
    write_atomic(plan.path / BUILD_STAMP, format_json(record))
    _LOG.info("built %s", plan.deploy_name)


def _prepare_runtime(plan: LayerPlan, previous: dict[str, Any], trash: _Trash) -> None:
    same_runtime = previous.get("runtime", {}).get("sha256") == plan.runtime.sha256
    python = plan.path / plan.layout.python
    if plan.path.exists() and same_runtime and python.exists():
        return  # packages are synced next; the interpreter itself is unchanged
    if plan.path.exists() or plan.path.is_symlink():
        trash.discard(plan.path)
    try:
        link_tree(unpacked_runtime(plan.runtime), plan.path)
    except OSError as exc:
        raise BuildError(f"{plan.build_name}: cannot unpack the runtime ({exc})") from None


def _prepare_venv(plan: LayerPlan) -> None:
    """A virtual environment skeleton whose interpreter is a relative link to the runtime."""
    layout = plan.layout
    (plan.path / layout.site_dir).mkdir(parents=True, exist_ok=True)
    if layout.windows:
        raise BuildError(f"{plan.build_name}: building on Windows is not supported yet")
    (plan.path / "bin").mkdir(exist_ok=True)
    runtime = plan.lower[-1]
    target = f"../{peer_path(runtime.deploy_name, runtime.layout.python)}"
    _symlink(plan.path / "bin" / "python", target)
    for name in layout.python_links()[1:]:
        _symlink(plan.path / name, "python")
    lib64 = plan.path / "lib64"
    if not lib64.exists() and not lib64.is_symlink():
        lib64.symlink_to("lib")
    # no `home`: CPython finds the runtime through the bin/python link, wherever it is;
    # `relocatable` makes uv write console scripts that find python relative to themselves
    write_if_changed(
        plan.path / "pyvenv.cfg",
        "include-system-site-packages = false\n"
        f"version = {layout.py_version}\n"
        "relocatable = true\n",
    )


def _symlink(link: Path, target: str) -> None:
    if link.is_symlink() and os.readlink(link) == target:
        return
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def _sync(plan: LayerPlan, options: BuildOptions, reporter: Reporter) -> list[LockedPackage]:
    """Make the layer's packages exactly those its lock installs (never those from below)."""
    layer = plan.layer
    target = WheelTarget(
        platform=plan.layout.platform,
        py_version=plan.layout.py_version,
        implementation=layer.runtime_spec.implementation,
        linux_target=layer.linux_target,
        macosx_target=layer.macosx_target,
    )
    return sync_layer(
        plan.path / plan.layout.python,
        plan.lock.paths.pylock,
        target,
        search_dirs=options.local_wheels,
        reporter=reporter,
        layer=plan.build_name,
    )


def _link_libraries(plan: LayerPlan) -> list[str]:
    if plan.layout.is_runtime:
        return []
    lower = [
        dynlibs.LayerLibs(
            deploy_name=low.deploy_name,
            layer_dir=low.path,
            site_dir_rel=low.layout.site_dir,
            exclude=tuple(low.layer.dynlib_exclude),
        )
        for low in plan.lower  # packages in the runtime layer may ship libraries too
    ]
    report = dynlibs.link_lower_libraries(
        plan.path,
        plan.layout.site_dir,
        plan.deploy_name,
        lower,
        build_root=plan.build_root,
    )
    return list(report.dynlib_dirs)


def _write_layer_files(plan: LayerPlan, dynlib_dirs: list[str]) -> None:
    layout = plan.layout
    runtime = plan.lower[-1] if plan.lower else plan
    config = LayerConfig(
        python=layout.python,
        py_version=layout.py_version,
        base_python=(
            layout.python
            if layout.is_runtime
            else peer_path(runtime.deploy_name, runtime.layout.python)
        ),
        site_dir=layout.site_dir,
        pylib_dirs=[peer_path(low.deploy_name, low.layout.site_dir) for low in plan.lower],
        dynlib_dirs=dynlib_dirs,
    )
    if isinstance(plan.layer, ApplicationSpec):
        config["launch_module"] = plan.layer.launch_module_name
    write_if_changed(plan.path / LAYER_CONFIG, format_json(config))
    write_if_changed(plan.path / POSTINSTALL, POSTINSTALL_SOURCE.read_text("utf-8"))
    if not layout.is_runtime:
        site = plan.path / layout.site_dir
        text = sitecustomize_text(config["pylib_dirs"], layout.site_dir)
        write_if_changed(site / SITECUSTOMIZE, text)
