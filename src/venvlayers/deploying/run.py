"""`venvlayers run`: find an application layer and run its launch module.

Three kinds of directory hold runnable layers side by side, and each says differently
which directory is which app:

- a deployment (`.venvlayers/state.json`): the state's records;
- an export (`venvlayers local-export`, `__venvstacks__/venvstacks.json` without
  archives): the metadata's `install_target` and `app_launch_module`;
- a build directory (`_build/`), or a deployment made by hand: the layer directories
  themselves, whose config (`share/venv/metadata/venvstacks_layer.json`) names the
  launch module. Versioned layers there are found by their build or deployed name.

The app runs as `<layer>/bin/python -m <launch module> ARGS`, in the caller's
environment minus what would point Python at venvlayers' own environment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DeployError
from ..layout import LAYER_CONFIG, MANIFEST, METADATA_DIR
from . import state as st

__all__ = ["AppCommand", "app_command", "app_environment", "run_app"]

# What would make the app's interpreter look at another environment than its own.
_UNSET = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONEXECUTABLE",
    "VIRTUAL_ENV",
    "VIRTUAL_ENV_PROMPT",
    "__PYVENV_LAUNCHER__",
)


@dataclass(frozen=True)
class AppCommand:
    """How to start an app: the command line, its environment, and where it was found."""

    name: str
    layer_dir: Path
    launch_module: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    kind: str  # "deployment", "export" or "directory"


def app_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`environ` (default: ours) without PYTHONPATH, PYTHONHOME, VIRTUAL_ENV and our venv's bin."""
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if k not in _UNSET}
    if sys.prefix != sys.base_prefix and "PATH" in env:
        ours = os.path.join(sys.prefix, "Scripts" if os.name == "nt" else "bin")
        kept = [p for p in env["PATH"].split(os.pathsep) if os.path.normpath(p) != ours]
        env["PATH"] = os.pathsep.join(kept)
    return env


def app_command(
    app: str,
    *,
    location: Path | None = None,
    args: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> AppCommand:
    """The command that runs `app` from `location` (default: the current directory)."""
    where = Path(location if location is not None else Path.cwd()).absolute()
    if not where.is_dir():
        raise DeployError(f"cannot run {app!r}: {where} is not a directory")
    state = st.read_state(where)
    if state is not None:
        layer_dir, module = _from_state(state, app, where), None
        kind = "deployment"
    elif (where / METADATA_DIR / MANIFEST).is_file():
        layer_dir, module = _from_metadata(where, app)
        kind = "export"
    else:
        layer_dir, module = _from_directories(where, app), None
        kind = "directory"
    if not layer_dir.is_dir():
        raise DeployError(f"{layer_dir.name} cannot run: {layer_dir} is missing")
    config = st.read_layer_config(layer_dir, layer_dir.name)
    module = module or config.get("launch_module")
    if not isinstance(module, str) or not module:
        raise DeployError(f"{layer_dir.name} is not an application layer (no launch module)")
    python = layer_dir / str(config.get("python", "bin/python"))
    _check_runnable(layer_dir, python, config)
    # -P (3.11+): the current directory must not shadow the deployed launch module
    safe_path = ("-P",) if _minor(config.get("py_version")) >= (3, 11) else ()
    argv = (str(python), *safe_path, "-m", module, *args)
    return AppCommand(layer_dir.name, layer_dir, module, argv, app_environment(environ), kind)


def run_app(
    app: str,
    *,
    location: Path | None = None,
    args: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run `app` in the foreground with our stdin/stdout/stderr; return its exit code.

    A child killed by signal N gives 128+N, as shells report it.
    """
    return run_command(app_command(app, location=location, args=args, environ=environ))


def run_command(command: AppCommand) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        proc = subprocess.Popen(command.argv, env=dict(command.env))
    except OSError as exc:
        raise DeployError(f"cannot start {command.name}: {exc.strerror or exc}") from None
    previous: dict[signal.Signals, Any] = {}
    if os.name == "posix" and threading.current_thread() is threading.main_thread():
        # Ctrl-C already reaches the app (same process group); we only wait for it.
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, lambda signum, _frame: proc.send_signal(signum))
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code


def _matches(name: str, *candidates: str) -> bool:
    return name in candidates or f"app-{name}" in candidates


def _from_state(state: st.DeployState, app: str, where: Path) -> Path:
    records = {r.install_target: r for r in state.layers.values()}
    roots = dict(state.roots)
    if state.transaction is not None:
        # a deploy was cut short while moving layers: either version may be in place
        records.update(state.transaction.records)
        roots.update(state.transaction.roots)
    apps = [r for r in records.values() if r.launch_module is not None]
    found = [r for r in apps if _matches(app, r.install_target, r.layer_name)]
    if not found:
        names = ", ".join(sorted({r.short_name for r in apps})) or "none"
        raise DeployError(f"no app {app!r} is deployed in {where} (apps: {names})")
    present = [r for r in found if (where / r.install_target).is_dir()] or found
    # several versions: the one the user asked for last, else the newest
    rooted = set(roots.values())
    best = max(present, key=lambda r: (r.install_target in rooted, r.lock_version))
    return where / best.install_target


def _from_metadata(where: Path, app: str) -> tuple[Path, str | None]:
    path = where / METADATA_DIR / MANIFEST
    try:
        data = json.loads(path.read_text("utf-8"))
        entries = data["layers"]["applications"]
        apps = [
            (str(e["install_target"]), str(e["layer_name"]), e.get("app_launch_module"))
            for e in entries
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DeployError(f"cannot read the applications from {path}: {exc!r}") from None
    for install_target, layer_name, module in apps:
        if _matches(app, install_target, layer_name):
            try:
                layer_dir = where / _plain(install_target)
            except ValueError:
                raise DeployError(f"{path}: bad install_target {install_target!r}") from None
            if not layer_dir.is_dir():
                if any(where.glob(f"{install_target}.*")):
                    raise DeployError(
                        f"{where} is a published stack, not a deployment; run "
                        f"`venvlayers deploy {where} --target DIR` first"
                    )
                raise DeployError(f"app {app!r} is not in {where}: {layer_dir.name} is missing")
            return layer_dir, module if isinstance(module, str) else None
    names = ", ".join(sorted(name.removeprefix("app-") for _t, name, _m in apps)) or "none"
    raise DeployError(f"no app {app!r} in {path} (apps: {names})")


def _plain(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(name)
    return name


def _from_directories(where: Path, app: str) -> Path:
    """An app layer directory of `where` named for `app`; the newest `@version` wins."""
    apps: dict[Path, list[Path]] = {}
    try:
        children = sorted(where.iterdir())
    except OSError as exc:
        raise DeployError(f"cannot list {where}: {exc.strerror}") from None
    for child in children:
        if child.name.startswith(".") or not (child / LAYER_CONFIG).is_file():
            continue
        if "launch_module" not in st.read_layer_config(child, child.name):
            continue
        apps.setdefault(child.resolve(), []).append(child)
    found: list[tuple[int, Path]] = []
    for paths in apps.values():
        for path in paths:
            base, _, version = path.name.partition("@")
            if _matches(app, path.name, base):
                found.append((int(version) if version.isdigit() else 0, paths[0]))
                break
    if not found:
        if not apps:
            raise DeployError(
                f"{where} holds no application layers; pass --target with a deployment, "
                "an export or a build directory"
            )
        known = sorted({p.name.partition("@")[0].removeprefix("app-") for p in apps})
        raise DeployError(f"no app {app!r} in {where} (apps: {', '.join(known)})")
    found.sort(key=lambda item: item[0])
    if len(found) > 1 and found[-1][0] == found[-2][0]:
        several = ", ".join(p.name for _v, p in found)
        raise DeployError(f"{app!r} is ambiguous in {where}: {several}")
    return found[-1][1]


def _check_runnable(layer_dir: Path, python: Path, config: Mapping[str, Any]) -> None:
    missing = sorted(
        {
            _layer_of(layer_dir, rel)
            for rel in config.get("pylib_dirs", [])
            if isinstance(rel, str) and not (layer_dir / rel).is_dir()
        }
    )
    if missing:
        raise DeployError(
            f"{layer_dir.name} cannot run: layers it needs are missing ({', '.join(missing)})"
        )
    if not python.exists():
        raise DeployError(
            f"{layer_dir.name} cannot run: {python} is missing (is its runtime layer deployed, "
            "and was postinstall.py run?)"
        )


def _layer_of(layer_dir: Path, relative: str) -> str:
    """`framework-x` for `../framework-x/lib/...` (the path itself if it is not a sibling)."""
    parts = relative.replace("\\", "/").split("/")
    return parts[1] if len(parts) > 1 and parts[0] == ".." else relative


def _minor(version: object) -> tuple[int, int]:
    """(major, minor) of a layer config's `py_version` ((0, 0) if it has none)."""
    parts = str(version or "").split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)
