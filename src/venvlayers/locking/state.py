"""Lock validity: which inputs a layer lock depends on, and whether they still hold.

A lock is valid when its metadata file records the same input hashes as the spec
gives now and the lock file on disk still hashes to its recorded
`requirements_hash`. Unlike venvstacks, the "other inputs" include the actual pins
of every lower layer (through their `requirements_hash`), so relocking a framework
invalidates exactly the layers built on it whose inputs really changed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._util.hashing import hash_strings
from ..errors import LockError
from ..names import BuildName, DeployName
from ..spec.appmodules import modules_hash
from ..spec.stack import ApplicationSpec, LayerSpec, StackSpec
from ..spec.uvconfig import parse_timestamp
from .files import LockPaths, read_metadata
from .pylock import LockedPackage, read_pylock
from .resolve import LowerPin
from .venvstacks import ADOPTED, adoption_problem, read_venvstacks_lock

__all__ = ["LockInputs", "LockState", "evaluate_locks", "lock_inputs", "requirements_hash"]


@dataclass(frozen=True)
class LockInputs:
    """The three input hashes recorded in `pylock.<name>.meta.json`."""

    lock_input_hash: str
    other_inputs_hash: str
    version_inputs_hash: str


def requirements_hash(packages: list[LockedPackage]) -> str:
    """Hash of what a lock pins: every package, marker and wheel hash (format-independent)."""
    items: list[str] = []
    for package in packages:
        items.append(("shared:" if package.shared else "") + package.pin)
        items.extend(f"{package.name}:{w.filename}:sha256:{w.sha256}" for w in package.wheels)
    return hash_strings(sorted(items))


def exclude_newer(stack: StackSpec) -> str | None:
    """The effective `exclude-newer` cut-off (UV_EXCLUDE_NEWER wins), ISO UTC, or None."""
    raw = os.environ.get("UV_EXCLUDE_NEWER") or stack.uv.settings.get("exclude-newer")
    if not isinstance(raw, str):
        return None
    parsed = parse_timestamp(raw)
    if parsed is None:
        raise LockError(f"UV_EXCLUDE_NEWER={raw!r} is not an RFC 3339 timestamp")
    return parsed.isoformat()


def _module_hashes(app: ApplicationSpec, spec_dir: Path) -> list[str]:
    """The app's launch and support modules, as the build would copy them."""
    sources = [app.launch_module, *app.support_modules]
    return [f"modules:{modules_hash(sources, boundary=spec_dir)}"]


def lock_inputs(
    stack: StackSpec, layer: LayerSpec, lower_hashes: Mapping[BuildName, str | None]
) -> LockInputs | None:
    """Current input hashes of `layer`, or None if a lower layer has no valid lock."""
    runtime = layer.runtime_spec
    lowers: list[str] = []
    for low in layer.lower_layers:
        pinned = lower_hashes.get(low.build_name)
        if pinned is None:
            return None
        lowers.append(f"lower:{low.build_name}:{pinned}")
    other = [
        f"python:{runtime.python_implementation}",
        f"runtime_archive_sha256:{runtime.python_archive_sha256 or ''}",
        f"platforms:{','.join(layer.platforms)}",
        f"linux_target:{layer.linux_target or ''}",
        f"macosx_target:{'.'.join(map(str, layer.macosx_target or ()))}",
        f"uv_settings:{_canonical(stack.uv.settings)}",
        f"uv_indexes:{_canonical(list(stack.uv.indexes))}",
        f"exclude_newer:{exclude_newer(stack) or ''}",
        f"package_indexes:{_canonical(dict(layer.package_indexes))}",
        f"uv_sources:{_canonical(dict(stack.uv.package_indexes))}",
        f"priority_indexes:{','.join(layer.priority_indexes)}",
        *lowers,
    ]
    version = [f"build_name:{layer.build_name}", f"versioned:{layer.versioned}"]
    if isinstance(layer, ApplicationSpec):
        version.extend(_module_hashes(layer, stack.spec_dir))
    return LockInputs(
        lock_input_hash=hash_strings(sorted(str(r) for r in layer.requirements)),
        other_inputs_hash=hash_strings(other),
        version_inputs_hash=hash_strings(version),
    )


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


@dataclass(frozen=True)
class LockState:
    """What the lock files of one layer say, checked against the current spec."""

    layer: LayerSpec
    paths: LockPaths
    inputs: LockInputs | None  # None while a lower layer has no valid lock
    metadata: Mapping[str, Any] | None
    file_hash: str | None  # requirements_hash of the lock file on disk
    problem: str | None  # why the lock is not valid; None if it is
    adopted: bool = False  # valid as the venvstacks lock it is (not rewritten yet)

    @property
    def valid(self) -> bool:
        return self.problem is None

    @property
    def reason(self) -> str | None:
        """Why the lock is not valid, `adopted the venvstacks lock`, or None."""
        return ADOPTED if self.adopted else self.problem

    @property
    def lock_version(self) -> int | None:
        """The lock's version; always 1 for a layer that is not versioned (as venvstacks)."""
        if self.metadata is None:
            return None
        if not self.layer.versioned:
            return 1
        value = self.metadata.get("lock_version", 1)
        return value if isinstance(value, int) else None

    @property
    def locked_at(self) -> str | None:
        value = self.metadata.get("locked_at") if self.metadata else None
        return value if isinstance(value, str) else None

    @property
    def deploy_name(self) -> DeployName | None:
        """`build-name@lock_version` for versioned layers (None without a valid lock)."""
        if not self.layer.versioned:
            return DeployName(self.layer.build_name)
        if not self.valid or self.lock_version is None:
            return None
        return DeployName(f"{self.layer.build_name}@{self.lock_version}")


def _check(
    inputs: LockInputs | None,
    meta: Mapping[str, Any] | None,
    file_hash: str | None,
    versioned: bool,
) -> str | None:
    if file_hash is None:
        return "not locked yet"
    if meta is None:
        return "lock metadata is missing"
    if inputs is None:
        return "a lower layer is not locked"
    if meta.get("requirements_hash") != file_hash:
        return "the lock file was edited or is incomplete"
    if meta.get("lock_input_hash") != inputs.lock_input_hash:
        return "requirements changed"
    if meta.get("other_inputs_hash") != inputs.other_inputs_hash:
        return (
            "other lock inputs changed (runtime, platforms, indexes, lower-layer pins, "
            "or how this venvlayers version hashes them)"
        )
    if versioned and meta.get("version_inputs_hash") != inputs.version_inputs_hash:
        return "versioned layer inputs (name or launch modules) changed"
    return None


def layer_state(
    stack: StackSpec,
    layer: LayerSpec,
    lower_hashes: Mapping[BuildName, str | None],
    lower: Sequence[LowerPin] | None = None,
) -> LockState:
    """The state of one layer's lock; `lower`: the lower layers' pins, if not on disk yet."""
    paths = LockPaths.of(stack.requirements_dir, layer.build_name)
    inputs = lock_inputs(stack, layer, lower_hashes)
    meta = read_metadata(paths)
    file_hash: str | None = None
    packages: list[LockedPackage] | None = None
    if paths.pylock.exists():
        try:
            packages = read_pylock(paths.pylock)
            file_hash = requirements_hash(packages)
        except LockError:
            file_hash = "unreadable"
    problem = _check(inputs, meta, file_hash, layer.versioned)
    if file_hash == "unreadable":
        problem = "the lock file is not a valid pylock.toml"
    adopted = False
    if problem is not None and packages is not None and inputs is not None:
        found = read_venvstacks_lock(paths.pylock, meta)
        if found is not None:
            try:
                pins = lower if lower is not None else _lower_pins_on_disk(stack, layer)
            except LockError:
                problem = "a lower layer is not locked"
                return LockState(layer, paths, inputs, meta, file_hash, problem)
            problem = adoption_problem(stack, layer, found, packages, pins)
            adopted = problem is None
    return LockState(layer, paths, inputs, meta, file_hash, problem, adopted)


def _lower_pins_on_disk(stack: StackSpec, layer: LayerSpec) -> list[LowerPin]:
    pins: list[LowerPin] = []
    for low in layer.lower_layers:
        packages = read_pylock(LockPaths.of(stack.requirements_dir, low.build_name).pylock)
        pins.extend(LowerPin(low.build_name, p) for p in packages if not p.shared)
    return pins


def evaluate_locks(stack: StackSpec) -> dict[BuildName, LockState]:
    """The lock state of every enabled layer, lower layers first.

    An upper layer is judged against the lower layers' lock files as they are: it
    stays valid while a lower layer awaits a relock that may not change its pins.
    """
    states: dict[BuildName, LockState] = {}
    hashes: dict[BuildName, str | None] = {}
    for layer in stack.layers():
        state = layer_state(stack, layer, hashes)
        states[layer.build_name] = state
        hashes[layer.build_name] = state.file_hash if state.metadata is not None else None
    return states
