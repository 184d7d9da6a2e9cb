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
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit

from . import appmodules, dynlibs
from ._fs import format_json, remove_tree, write_atomic, write_if_changed
from ._hashing import hash_strings
from ._progress import NULL_REPORTER, Reporter
from ._pylock import LockedPackage, read_pylock
from ._uv import run_uv
from .errors import BuildError
from .graph import dependency_levels, select_layers
from .layout import (
    BUILD_STAMP,
    LAYER_CONFIG,
    POSTINSTALL,
    SITECUSTOMIZE,
    LayerConfig,
    Layout,
    peer_path,
)
from .lockstate import LockState, evaluate_locks
from .names import BuildName, DeployName
from .platforms import TargetPlatform, build_platform
from .runtimes import RuntimeArchive, obtain_runtime, unpack_runtime
from .spec import ApplicationSpec, LayerSpec, RuntimeSpec, StackSpec

__all__ = ["BuildOptions", "LayerBuildResult", "build_stack", "plan_stack"]

_LOG = logging.getLogger(__name__)

# bump when the layout of built layers changes, so older builds are redone
BUILD_FORMAT = 1
_INJECTED = Path(__file__).parent / "_injected" / "postinstall.py"


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

    @property
    def inputs_hash(self) -> str:
        """Everything a finished build of this layer depends on."""
        items = [
            f"format:{BUILD_FORMAT}",
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
class LayerBuildResult:
    build_name: BuildName
    deploy_name: DeployName
    path: Path
    action: str  # "built" | "unchanged"
    seconds: float
    packages: int


def read_stamp(layer_dir: Path) -> dict[str, Any] | None:
    """The finished-build record of a layer directory, or None."""
    import json

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


def build_stack(
    stack: StackSpec, options: BuildOptions = BuildOptions(), reporter: Reporter = NULL_REPORTER
) -> list[LayerBuildResult]:
    """Build the selected layers (and any missing layers below them)."""
    build_root = (options.build_dir or stack.spec_dir / "_build").absolute()
    selection = select_layers(
        stack,
        options.include or None,
        derived=options.build_derived,
        allow_missing=options.allow_missing,
    )
    plans = plan_stack(stack, selection.layers, build_root, reporter=reporter)
    wanted = {x.build_name for x in (*selection.matched, *selection.derived)}
    if options.build_dependencies or not options.include:
        wanted |= {x.build_name for x in selection.dependencies}
    build_root.mkdir(parents=True, exist_ok=True)
    _write_aliases(build_root, plans.values())
    results: dict[BuildName, LayerBuildResult] = {}
    jobs = options.jobs or min(4, os.cpu_count() or 2)
    for level in dependency_levels([p.layer for p in plans.values()]):

        def one(layer: LayerSpec) -> LayerBuildResult:
            plan = plans[layer.build_name]
            if plan.build_name not in wanted and _up_to_date(plan):
                return _result(plan, "unchanged", 0.0)
            if plan.build_name not in wanted and read_stamp(plan.path) is not None:
                raise BuildError(
                    f"{plan.build_name}: its build is out of date; build it too "
                    "(--build-dependencies) before building the layers on top of it"
                )
            return build_layer(plan, options, reporter)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for result in pool.map(one, level):
                results[result.build_name] = result
    return [results[x.build_name] for x in selection.layers if x.build_name in results]


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


def build_layer(plan: LayerPlan, options: BuildOptions, reporter: Reporter) -> LayerBuildResult:
    """(Re)build one layer whose lower layers are already built."""
    key = f"build:{plan.build_name}"
    reporter.begin(key, f"build {plan.deploy_name}")
    if not options.clean and _up_to_date(plan):
        reporter.end(key, "unchanged")
        return _result(plan, "unchanged", 0.0)
    started = time.monotonic()
    stamp = plan.path / BUILD_STAMP
    previous = read_stamp(plan.path) or {}
    try:
        stamp.unlink(missing_ok=True)  # from here on the layer reads as unfinished
        if plan.layout.is_runtime:
            _prepare_runtime(plan, previous, options.clean)
        else:
            _prepare_venv(plan, options.clean)
        packages = _sync_packages(plan, options)
        _fix_scripts(plan)
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
        write_atomic(stamp, format_json(record))
    except BaseException:
        reporter.end(key, "failed")
        raise
    seconds = time.monotonic() - started
    reporter.end(key, "built")
    _LOG.info("built %s in %.1fs", plan.deploy_name, seconds)
    return _result(plan, "built", seconds)


def _prepare_runtime(plan: LayerPlan, previous: dict[str, Any], clean: bool) -> None:
    same_runtime = previous.get("runtime", {}).get("sha256") == plan.runtime.sha256
    python = plan.path / plan.layout.python
    if plan.path.exists() and not clean and same_runtime and python.exists():
        return  # packages are synced below; the interpreter itself is unchanged
    if plan.path.exists() or plan.path.is_symlink():
        remove_tree(plan.path)
    try:
        unpack_runtime(plan.runtime, plan.path)
    except OSError as exc:
        raise BuildError(f"{plan.build_name}: cannot unpack the runtime ({exc})") from None


def _prepare_venv(plan: LayerPlan, clean: bool) -> None:
    """A virtual environment skeleton whose interpreter is a relative link to the runtime."""
    if clean and (plan.path.exists() or plan.path.is_symlink()):
        remove_tree(plan.path)
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


def _sync_packages(plan: LayerPlan, options: BuildOptions) -> list[LockedPackage]:
    """Make the layer's packages exactly those its lock installs (never those from below)."""
    lock_path = plan.lock.paths.pylock
    packages = [p for p in read_pylock(lock_path) if not p.shared]
    with tempfile.TemporaryDirectory(prefix="venvlayers-sync-") as tmp:
        install_lock = Path(tmp) / "pylock.toml"
        install_lock.write_text(_install_lock(packages, lock_path.parent, options), "utf-8")
        run_uv(
            [
                "pip",
                "sync",
                "--python",
                str(plan.path / plan.layout.python),
                "--require-hashes",
                "--no-build",
                "--allow-empty-requirements",
                "--quiet",
                str(install_lock),
            ],
            what=f"installing the packages of {plan.build_name}",
            error=BuildError,
        )
    return packages


def _install_lock(packages: list[LockedPackage], lock_dir: Path, options: BuildOptions) -> str:
    """The layer's own packages with local wheel paths made absolute for uv."""
    doc: dict[str, Any] = {"lock-version": "1.0", "created-by": "venvlayers"}
    entries = []
    for package in packages:
        entry = package.to_toml()
        wheels = tomlkit.array()
        for wheel in package.wheels:
            item = wheel.to_toml()
            if wheel.path is not None:
                item["path"] = str(_find_wheel(lock_dir, wheel.path, options.local_wheels))
            wheels.append(item)
        entry["wheels"] = wheels
        entries.append(entry)
    doc["packages"] = entries
    return tomlkit.dumps(doc)


def _find_wheel(lock_dir: Path, relative: str, local_wheels: Sequence[Path]) -> Path:
    """A lock's local wheel: where the lock says, else by name in --local-wheels dirs."""
    recorded = (lock_dir / relative).resolve()
    if recorded.exists():
        return recorded
    for directory in local_wheels:
        candidate = Path(directory).absolute() / Path(relative).name
        if candidate.exists():
            return candidate
    raise BuildError(
        f"local wheel {Path(relative).name} is missing (the lock in {lock_dir} expects it at "
        f"{recorded}); pass the directory holding it with --local-wheels"
    )


_LAUNCHER = """#!/bin/sh
'''exec' "$(dirname -- "$(realpath -- "$0")")"/'{name}' "$0" "$@"
' '''
"""


def _fix_scripts(plan: LayerPlan) -> None:
    """Console scripts with an absolute shebang into this layer get a relative launcher.

    The launcher is both a shell script and a Python file: the shell runs the
    interpreter next to the script's real location, which then reads the rest.
    """
    bin_dir = plan.path / plan.layout.bin_dir
    if plan.layout.windows or not bin_dir.is_dir():
        return
    layer_root = str(plan.path.resolve()) + "/"
    for script in sorted(bin_dir.iterdir()):
        if script.is_symlink() or not script.is_file():
            continue
        content = script.read_bytes()
        first, _, rest = content.partition(b"\n")
        if not first.startswith(b"#!"):
            continue
        words = first[2:].decode("utf-8", "replace").split()
        if not words or not words[0].startswith(layer_root):
            continue
        launcher = _LAUNCHER.format(name=os.path.basename(words[0]))
        mode = script.stat().st_mode
        write_atomic(script, launcher.encode() + rest)  # a new inode: uv's cache is untouched
        script.chmod(mode)


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
    write_if_changed(plan.path / POSTINSTALL, _INJECTED.read_text("utf-8"))
    if not layout.is_runtime:
        site = plan.path / layout.site_dir
        write_if_changed(site / SITECUSTOMIZE, sitecustomize_text(config["pylib_dirs"], layout))


def sitecustomize_text(pylib_dirs: Sequence[str], layout: Layout) -> str:
    """Adds the lower layers' site-packages (relative to this file) to sys.path."""
    depth = len(Path(layout.site_dir).parts)  # from site-packages back up to the layer
    up = "/".join([".."] * depth)
    entries = "".join(f'        "{up}/{d}",\n' for d in pylib_dirs)
    return (
        '"""Generated by venvlayers: puts the lower layers of this layer on sys.path.\n\n'
        "Paths are relative to this file, so the stack can be moved as a whole.\n"
        '"""\n\n\n'
        "def _add_lower_layers() -> None:\n"
        "    import os\n"
        "    import site\n\n"
        "    here = os.path.dirname(os.path.abspath(__file__))\n"
        "    for relative in (\n"
        f"{entries}"
        "    ):\n"
        "        site.addsitedir(os.path.normpath(os.path.join(here, relative)))\n\n\n"
        "_add_lower_layers()\n"
        "del _add_lower_layers\n"
    )
