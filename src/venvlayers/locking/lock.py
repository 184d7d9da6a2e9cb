"""`venvlayers lock`: integrated, cross-platform, stable locks for every layer.

Layers are locked lowest first; each upper layer is resolved with the pins of all
the layers below it as constraints, and the packages those layers provide are kept
in its lock marked as provided below. The previous lock is the resolver's
preference, so a relock moves no pin unless asked to (`--upgrade`,
`--upgrade-package`). Independent layers (same depth) are locked in parallel, and
files are only rewritten when their content changes.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .._util.fs import format_json, write_if_changed
from ..errors import LockError
from ..names import BuildName, DeployName
from ..progress import NULL_REPORTER, Reporter
from ..spec.graph import dependency_levels, select_layers
from ..spec.stack import LayerSpec, StackSpec
from .files import LockPaths, read_metadata
from .pylock import LockedPackage, read_pylock, render_pylock
from .resolve import LowerPin, ResolveRequest, Targets, local_build_wheels, resolve_layer
from .state import (
    LockInputs,
    LockState,
    exclude_newer,
    layer_state,
    lock_inputs,
    requirements_hash,
)
from .venvstacks import (
    ADOPTED,
    fill_shared_wheels,
    read_venvstacks_lock,
    version_inputs_hash as venvstacks_version_inputs_hash,
)

__all__ = ["LayerLockResult", "LockOptions", "lock_stack", "lower_pins"]

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class LockOptions:
    """What `lock_stack` should do (the `venvlayers lock` options)."""

    include: Sequence[str] = ()
    allow_missing: bool = False
    lock_dependencies: bool = False  # with include: relock dependencies even if valid
    if_needed: bool = False  # only relock layers whose lock is not valid
    reset_lock: Sequence[str] = ()  # patterns: ignore these layers' previous pins
    upgrade: bool = False
    upgrade_packages: Sequence[str] = ()
    local_wheels: Sequence[Path] = ()
    use_index: bool = True
    jobs: int = 0  # 0: a sensible default for this machine


@dataclass(frozen=True)
class LayerLockResult:
    """The outcome for one layer."""

    build_name: BuildName
    deploy_name: DeployName
    # "locked" (pins changed), "relocked" (same pins), "valid" (left alone),
    # "adopted" (a venvstacks lock kept as it is, rewritten in our format)
    action: str
    reason: str | None
    lock_version: int
    locked_at: str
    packages: int  # installed by this layer
    shared: int  # provided by lower layers
    lock_path: Path
    local_builds: tuple[str, ...] = ()  # `linux_<arch>` wheels from local directories

    @property
    def changed(self) -> bool:
        return self.action == "locked"


def lock_stack(
    stack: StackSpec, options: LockOptions = LockOptions(), reporter: Reporter = NULL_REPORTER
) -> list[LayerLockResult]:
    """Lock the selected layers of `stack`; return one result per layer considered.

    All-or-nothing: lock files are only written once every selected layer resolved,
    so a conflict in an application never leaves its framework relocked without it.
    """
    selection = select_layers(stack, options.include or None, allow_missing=options.allow_missing)
    forced: set[BuildName] = set()
    if not options.if_needed:
        chosen = [*selection.matched, *selection.derived] if options.include else stack.layers()
        if options.lock_dependencies:
            chosen = [*chosen, *selection.dependencies]
        forced = {x.build_name for x in chosen}
    resets = {
        x.build_name
        for x in selection.layers
        if any(fnmatch.fnmatchcase(x.build_name, p) for p in options.reset_lock)
    }
    forced |= resets
    cutoff = exclude_newer(stack)
    hashes: dict[BuildName, str | None] = {}
    pending: dict[BuildName, _Pending] = {}
    layers = selection.layers
    jobs = options.jobs or min(4, os.cpu_count() or 2)
    with tempfile.TemporaryDirectory(prefix="venvlayers-lock-") as work:
        for level in dependency_levels(layers):
            _fill_lower_hashes(stack, level, hashes)
            known, lowers = dict(pending), dict(hashes)

            def one(
                layer: LayerSpec,
                known: dict[BuildName, _Pending] = known,
                lowers: dict[BuildName, str | None] = lowers,
            ) -> _Pending:
                return _lock_one(
                    stack,
                    layer,
                    options,
                    lowers,
                    known,
                    force=layer.build_name in forced,
                    reset=layer.build_name in resets,
                    cutoff=cutoff,
                    workdir=Path(work) / layer.build_name,
                    reporter=reporter,
                )

            with ThreadPoolExecutor(max_workers=jobs) as pool:
                for outcome in pool.map(one, level):
                    pending[outcome.layer.build_name] = outcome
                    hashes[outcome.layer.build_name] = outcome.requirements_hash
    for outcome in pending.values():
        outcome.write()
    results = [pending[x.build_name].result() for x in layers]
    _warn_local_builds(results)
    return results


def _warn_local_builds(results: Sequence[LayerLockResult]) -> None:
    """One warning per run naming every locally built wheel a (re)locked layer takes.

    A logged warning (the CLI prints it as `warning: ...`); scripts read
    `LayerLockResult.local_builds`.
    """
    found = sorted({w for r in results if r.action != "valid" for w in r.local_builds})
    if not found:
        return
    message = (
        f"{len(found)} locally built wheel(s) tagged linux_<arch> "
        f"({', '.join(found)}) only run on machines like the one that built them "
        "(same glibc or newer, same libraries); publish manylinux wheels to deploy widely"
    )
    _LOG.warning("%s", message)


def _fill_lower_hashes(
    stack: StackSpec, level: Sequence[LayerSpec], hashes: dict[BuildName, str | None]
) -> None:
    """Lower layers outside the selection count with whatever valid lock they have."""
    for layer in level:
        for low in reversed(layer.lower_layers):
            if low.build_name not in hashes:
                state = layer_state(stack, low, hashes)
                hashes[low.build_name] = state.file_hash if state.valid else None


@dataclass
class _Pending:
    """A layer's new lock, held in memory until every selected layer has resolved."""

    layer: LayerSpec
    paths: LockPaths
    action: str
    reason: str | None
    packages: list[LockedPackage]
    requirements_hash: str | None
    metadata: dict[str, object] | None = None
    files: dict[Path, str] | None = None  # None: nothing to write

    def write(self) -> None:
        if not self.files:
            return
        self.paths.directory.mkdir(parents=True, exist_ok=True)
        # metadata last: a crash in between leaves a lock that reads as invalid
        for path, text in self.files.items():
            write_if_changed(path, text)
        if self.paths.legacy_summary != self.paths.summary:
            self.paths.legacy_summary.unlink(missing_ok=True)

    def result(self) -> LayerLockResult:
        meta = self.metadata or {}
        version = meta.get("lock_version", 1)
        version = version if isinstance(version, int) else 1
        deploy = (
            f"{self.layer.build_name}@{version}" if self.layer.versioned else self.layer.build_name
        )
        return LayerLockResult(
            build_name=self.layer.build_name,
            deploy_name=DeployName(deploy),
            action=self.action,
            reason=self.reason,
            lock_version=version,
            locked_at=str(meta.get("locked_at", "")),
            packages=sum(1 for p in self.packages if not p.shared),
            shared=sum(1 for p in self.packages if p.shared),
            lock_path=self.paths.pylock,
            local_builds=tuple(local_build_wheels(self.layer, self.packages)),
        )


def _lock_one(
    stack: StackSpec,
    layer: LayerSpec,
    options: LockOptions,
    lower_hashes: dict[BuildName, str | None],
    pending: dict[BuildName, _Pending],
    *,
    force: bool,
    reset: bool,
    cutoff: str | None,
    workdir: Path,
    reporter: Reporter,
) -> _Pending:
    key = f"lock:{layer.build_name}"
    reporter.begin(key, f"lock {layer.build_name}")
    try:
        known_lower: list[LowerPin] | None = lower_pins(stack, layer, pending)
    except LockError:
        known_lower = None  # a lower layer has no lock file: reported below
    state = layer_state(stack, layer, lower_hashes, known_lower)
    moving = reset or options.upgrade or bool(options.upgrade_packages)
    if state.adopted and known_lower is not None and not moving:
        outcome = _adopt(layer, state, known_lower)
        reporter.end(key, "adopted")
        return outcome
    if state.valid and not force:
        reporter.end(key, "valid")
        packages = read_pylock(state.paths.pylock)
        meta = dict(state.metadata or {})
        return _Pending(layer, state.paths, "valid", None, packages, state.file_hash, meta)
    missing = [x.build_name for x in layer.lower_layers if lower_hashes.get(x.build_name) is None]
    if missing:
        reporter.end(key, "failed")
        raise LockError(
            f"{layer.build_name}: lower layer {', '.join(missing)} has no valid lock; lock it "
            "first (drop --include, or add --lock-dependencies)"
        )
    reason = "requested" if state.valid else state.problem
    _LOG.info("locking %s (%s)", layer.build_name, reason)
    lower = lower_pins(stack, layer, pending)
    try:
        packages = resolve_layer(
            ResolveRequest(
                stack=stack,
                layer=layer,
                lower=lower,
                previous=None if reset else _previous_pins(state),
                lock_dir=state.paths.directory,
                workdir=workdir,
                upgrade=options.upgrade,
                upgrade_packages=tuple(options.upgrade_packages),
                local_wheels=tuple(Path(p).absolute() for p in options.local_wheels),
                use_index=options.use_index,
                exclude_newer=cutoff,
            )
        )
    except LockError:
        reporter.end(key, "failed")
        raise
    inputs = lock_inputs(stack, layer, lower_hashes)
    assert inputs is not None  # lower layers are locked (checked above)
    outcome = _new_lock(stack, layer, state, inputs, packages, lower, cutoff, reason)
    reporter.end(key, "locked" if outcome.action == "locked" else "unchanged")
    return outcome


def _previous_pins(state: LockState) -> list[LockedPackage] | None:
    if not state.paths.pylock.exists():
        return None
    try:
        return read_pylock(state.paths.pylock)
    except LockError:
        return None  # an unreadable old lock is no preference, not an error


def lower_pins(
    stack: StackSpec, layer: LayerSpec, pending: dict[BuildName, _Pending] | None = None
) -> list[LowerPin]:
    """The packages each lower layer installs, highest priority layer first."""
    pins: list[LowerPin] = []
    for low in layer.lower_layers:
        new = (pending or {}).get(low.build_name)
        if new is not None:
            packages = new.packages
        else:
            packages = read_pylock(LockPaths.of(stack.requirements_dir, low.build_name).pylock)
        pins.extend(LowerPin(low.build_name, p) for p in packages if not p.shared)
    return pins


def _adopt(layer: LayerSpec, state: LockState, lower: list[LowerPin]) -> _Pending:
    """A venvstacks lock rewritten in our format: same pins, lock_version and locked_at.

    What changes is only what our format adds: our input hashes in the metadata, the
    wheels of packages provided below (copied from the lower layer's lock, so the file
    is complete PEP 751), `environments`, and the summary's provider notes.
    """
    assert state.inputs is not None and state.metadata is not None
    packages = fill_shared_wheels(read_pylock(state.paths.pylock), lower)
    meta = state.metadata
    version = meta.get("lock_version", 1)
    metadata = _metadata(
        state.inputs,
        requirements_hash(packages),
        version if isinstance(version, int) else 1,
        str(meta.get("locked_at")),
    )
    files = _lock_files(layer, state.paths, packages, lower, metadata)
    digest = requirements_hash(packages)
    return _Pending(layer, state.paths, "adopted", ADOPTED, packages, digest, metadata, files)


def _metadata(
    inputs: LockInputs, digest: str, version: int, locked_at: str | None
) -> dict[str, object]:
    return {
        "lock_input_hash": inputs.lock_input_hash,
        "lock_version": version,
        "locked_at": locked_at,
        "other_inputs_hash": inputs.other_inputs_hash,
        "requirements_hash": digest,
        "version_inputs_hash": inputs.version_inputs_hash,
    }


def _lock_files(
    layer: LayerSpec,
    paths: LockPaths,
    packages: list[LockedPackage],
    lower: list[LowerPin],
    metadata: dict[str, object],
) -> dict[Path, str]:
    text = render_pylock(
        packages,
        title=layer.build_name,
        requires_python=f"=={layer.runtime_spec.py_minor}.*",
        environments=Targets(layer).environment_markers(),
    )
    return {
        paths.pylock: text,
        paths.summary: _summary(layer, packages, lower),
        paths.metadata: format_json(metadata),
    }


def _pin_set(packages: list[LockedPackage]) -> set[tuple[str, str, str, bool]]:
    return {(p.name, str(p.version), str(p.marker or ""), p.shared) for p in packages}


def _new_lock(
    stack: StackSpec,
    layer: LayerSpec,
    state: LockState,
    inputs: LockInputs,
    packages: list[LockedPackage],
    lower: list[LowerPin],
    cutoff: str | None,
    reason: str | None,
) -> _Pending:
    """The files of a fresh lock; lock_version and locked_at only move if pins did.

    A previous lock written by venvstacks is compared by its pins (its hashes are not
    ours), and its version inputs as venvstacks hashed them.
    """
    paths = state.paths
    new_hash = requirements_hash(packages)
    previous = read_metadata(paths)
    old_version_inputs = (previous or {}).get("version_inputs_hash")
    if read_venvstacks_lock(paths.pylock, previous) is not None:
        pins_changed = _pin_set(read_pylock(paths.pylock)) != _pin_set(packages)
        version_changed = old_version_inputs != venvstacks_version_inputs_hash(stack, layer)
    else:
        pins_changed = previous is None or previous.get("requirements_hash") != new_hash
        version_changed = old_version_inputs != inputs.version_inputs_hash
    version = 1
    if layer.versioned:
        last = previous.get("lock_version", 0) if previous else 0
        last = last if isinstance(last, int) else 0
        bump = pins_changed or version_changed
        version = last + 1 if bump or last == 0 else last
    locked_at = cutoff
    if locked_at is None:
        old = (previous or {}).get("locked_at")
        keep = isinstance(old, str) and not pins_changed
        locked_at = old if keep else datetime.now(UTC).replace(microsecond=0).isoformat()
    metadata = _metadata(inputs, new_hash, version, locked_at)
    files = _lock_files(layer, paths, packages, lower, metadata)
    action = "locked" if pins_changed else "relocked"
    return _Pending(layer, paths, action, reason, packages, new_hash, metadata, files)


def _summary(layer: LayerSpec, packages: list[LockedPackage], lower: list[LowerPin]) -> str:
    providers = {(p.package.name, p.package.version): p.layer for p in lower}
    own = sorted(p.pin for p in packages if not p.shared)
    shared = sorted(
        f"{p.pin}  # from {providers.get((p.name, p.version), 'a lower layer')}"
        for p in packages
        if p.shared
    )
    lines = [f"# Packages of {layer.build_name} (generated by venvlayers; DO NOT EDIT)", *own]
    if shared:
        lines += ["", "# Provided by lower layers", *shared]
    return "\n".join(lines) + "\n"
