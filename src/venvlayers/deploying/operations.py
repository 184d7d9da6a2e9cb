"""Deploying published stacks onto a target directory, inspecting and pruning them.

`deploy` installs layers side by side as `TARGET/<install_target>/` in three phases:

1. *Check* (changes nothing): read and check the metadata, resolve the selection,
   and check every local archive that must be installed against its size and sha256.
2. *Prepare* (under the target's lock; changes nothing a user sees): fetch remote
   archives, verify them, extract each changed layer into
   `TARGET/.venvlayers/staging-<token>/<install_target>` with `extract_archive`'s
   containment checks, compile its bytecode with its runtime's interpreter (see
   `venvlayers.bytecode`), and run its `postinstall.py` there. Unchanged layers appear
   in the staging directory as links to their deployed directories, so each staged
   layer finds its lower layers as siblings, exactly as it will after the move.
3. *Commit*: record the moves as a transaction in `state.json`, then move each staged
   layer into place, lower layers first (an atomic exchange on Linux: the old
   directory is never missing), delete the old versions and the layers nothing
   needs any more, and record the result.

A failure or kill during 1 or 2 leaves the deployment as it was; one during 3 is
finished by the next `deploy` or `remove`, which also clears any leftovers.

Garbage collection: `state.json` keeps *roots*, the layers a user asked for by name
(or, for a deploy without `--app`, every app of the stack and every layer no app
needs). After each deploy or remove, deployed layers that no root needs are
deleted. Processes still running from a deleted layer are not tracked: on Linux
they keep the files they have open, but cannot import anything new from it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..bytecode import CompileResult
from ..errors import DeployError
from ..names import BuildName, DeployName, LayerCategory
from ..platforms import TargetPlatform, build_platform, suggest_platform
from ..progress import NULL_REPORTER, Reporter
from ..published import PublishedLayer, PublishedStack
from . import state as st
from .commit import apply_transaction, recover
from .inspection import AppStatus, LayerStatus, TargetStatus, status
from .run import AppCommand, app_command, app_environment, run_app
from .source import StackSource, select_published
from .staging import Staging, prepare_and_record, verify_local
from .trust import SignedBy, TrustCheck, TrustedKeys, check_signature

__all__ = [
    "AppCommand",
    "AppStatus",
    "DeployResult",
    "LayerResult",
    "LayerStatus",
    "RemoveResult",
    "TargetStatus",
    "app_command",
    "app_environment",
    "deploy",
    "remove",
    "run_app",
    "status",
]

_LOG = logging.getLogger(__name__)
_JOBS = 2  # extraction is GIL-bound in part: more threads than this buy little


@dataclass(frozen=True)
class LayerResult:
    """What a deploy did with one selected layer: `installed`, `updated` or `unchanged`."""

    install_target: DeployName
    layer_name: BuildName
    category: LayerCategory
    action: str
    archive_name: str
    archive_size: int
    installed_size: int
    seconds: float = 0.0
    compiled: int = 0
    """`.pyc` files this deploy wrote for the layer (0 for unchanged layers)."""
    not_compiled: tuple[str, ...] = ()
    """Layer-relative `.py` files that do not compile (also reported as warnings)."""


@dataclass(frozen=True)
class DeployResult:
    target: Path
    platform: TargetPlatform
    source: str
    layers: tuple[LayerResult, ...]
    removed: tuple[DeployName, ...]
    seconds: float
    signed_by: SignedBy | None = None
    """Who signed the stack, when the target requires signatures."""
    fetched: int = 0
    """Bytes of archives that came from a remote source in this deploy (0 for a
    published directory, and for archives an interrupted deploy had already fetched)."""

    @property
    def changed(self) -> tuple[LayerResult, ...]:
        return tuple(layer for layer in self.layers if layer.action != "unchanged")


@dataclass(frozen=True)
class RemoveResult:
    target: Path
    root: str
    removed: tuple[DeployName, ...]


def deploy(
    source: str | Path,
    target: Path,
    *,
    apps: Sequence[str] = (),
    platform: str | TargetPlatform | None = None,
    force: bool = False,
    compile_bytecode: bool = True,
    trusted_keys: Path | None = None,
    insecure: bool = False,
    lock_timeout: float | None = None,
    reporter: Reporter = NULL_REPORTER,
) -> DeployResult:
    """Deploy the published stack at `source` into the directory `target`.

    `source` is a published directory, its `file://` or `http(s)://` URL, an OCI
    registry reference (`oci://HOST/REPO:TAG` or `@sha256:...`) or an OCI image layout
    (`oci-layout:DIR`); plain http to hosts other than loopback needs `insecure`.

    `apps` names what to deploy (an app's short name, or a layer's build name or
    install target); with none, every layer published for `platform` (default: this
    machine's) is. Layers whose deployed archive has the same sha256 are left alone
    unless `force` (or unless they were deployed without bytecode and
    `compile_bytecode` asks for it). `compile_bytecode` gives every installed `.py`
    checked-hash bytecode from its runtime's interpreter, so apps start at full speed
    even on a read-only tree or with PYTHONDONTWRITEBYTECODE; without it the deploy
    is faster and the first start of each app pays instead (every start, where
    bytecode cannot be written). A `.py` that does not compile is a warning
    (`reporter.note`, `LayerResult.not_compiled`), not a failure. Layers for another
    CPU cannot run their interpreter here and get no bytecode. `trusted_keys` (an
    allowed_signers file) makes the target accept only stacks signed by one of its
    keys, from now on (see `trust`). `lock_timeout` bounds the wait for another deploy
    into `target` (None: wait as long as it takes). Raises `DeployError`,
    `SignatureError` or `ArchiveError`; the target is then as before (see the module
    docstring for interruptions).
    """
    started = time.monotonic()
    with StackSource.parse(source, insecure=insecure) as src:
        return _deploy(
            src,
            target,
            apps,
            platform,
            force,
            compile_bytecode,
            trusted_keys,
            lock_timeout,
            reporter,
            started,
        )


def _deploy(
    src: StackSource,
    target: Path,
    apps: Sequence[str],
    platform: str | TargetPlatform | None,
    force: bool,
    compile_bytecode: bool,
    trusted_keys: Path | None,
    lock_timeout: float | None,
    reporter: Reporter,
    started: float,
) -> DeployResult:
    plat = _target_platform(platform)
    helper_python = _postinstall_python(plat)
    if compile_bytecode and helper_python is not None:
        reporter.note(f"{plat} layers get no bytecode here: their interpreter cannot run here")
        compile_bytecode = False
    target = Path(target).absolute()
    if target.exists() and not target.is_dir():
        raise DeployError(f"cannot deploy into {target}: it is not a directory")
    new_trust = TrustedKeys.load(trusted_keys) if trusted_keys is not None else None
    early = _read_state_unlocked(target)
    published = src.load(plat)
    # no hash in the metadata is trusted before its signature is checked
    trust = _check_trust(published, new_trust, early)
    selection = select_published(published, apps, plat)

    # Phase 1: refuse a damaged local archive before the target is even created.
    verified: set[str] = set()
    if src.is_local:
        for layer in _to_install(selection.layers, early, target, force, compile_bytecode):
            verify_local(src, layer)
            verified.add(layer.archive_sha256)

    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeployError(f"cannot create {target}: {exc.strerror}") from None
    with st.target_lock(target, timeout=lock_timeout, waiting=reporter.note):
        state = recover(target, st.read_state(target) or st.DeployState(), reporter)
        if new_trust is None and state.trust != trust.keys:  # changed by another deploy
            trust = _check_trust(published, None, state)
        if state.platform and state.layers and state.platform != str(plat):
            raise DeployError(
                f"{target} holds a {state.platform} deployment; deploy {plat} layers elsewhere"
            )
        todo = _to_install(selection.layers, state, target, force, compile_bytecode)
        existed = {x.install_target for x in todo if os.path.lexists(target / x.install_target)}
        stage = Staging(target, helper_python, compile_bytecode, reporter)
        state = prepare_and_record(src, selection, trust, state, todo, stage, plat, verified)
        assert state.transaction is not None
        txn = state.transaction
        state = apply_transaction(target, state, reporter)
    for name in txn.install:
        _LOG.info("deployed %s into %s", name, target)
    for name in txn.remove:
        _LOG.info("removed %s: no deployed app needs it", name)
    results = tuple(
        _layer_result(layer, state, todo, stage, existed=layer.install_target in existed)
        for layer in selection.layers
    )
    seconds = round(time.monotonic() - started, 3)
    return DeployResult(
        target, plat, src.text, results, txn.remove, seconds, trust.signed_by, sum(stage.fetched)
    )


def _check_trust(
    published: PublishedStack, new: TrustedKeys | None, state: st.DeployState | None
) -> TrustCheck:
    """The keys to require (given, else the target's own) and who signed, if any are."""
    keys = new if new is not None else (state.trust if state is not None else None)
    if keys is None:
        return TrustCheck()
    signed_by = check_signature(
        published.raw,
        published.signature,
        keys,
        metadata_name=published.where,
        signature_name=published.signature_where,
    )
    return TrustCheck(keys, signed_by)


def _target_platform(platform: str | TargetPlatform | None) -> TargetPlatform:
    if platform is None:
        return build_platform()
    try:
        return TargetPlatform(platform)
    except ValueError:
        hint = suggest_platform(str(platform))
        advice = f"; did you mean {hint}?" if hint else ""
        raise DeployError(f"unknown platform {platform!r}{advice}") from None


def _postinstall_python(platform: TargetPlatform) -> str | None:
    """None to run postinstall with the layer's runtime, else the interpreter to use.

    Layers for another CPU cannot run their own runtime here; their postinstall
    only makes relative links, which our own interpreter makes just as well on any
    POSIX system. Windows layers need Windows to finish them.
    """
    native = build_platform()
    if platform == native:
        return None
    if (platform.os == "win") != (native.os == "win"):
        raise DeployError(
            f"cannot deploy {platform} layers on this {native} machine: "
            "their postinstall step must run on the same kind of operating system"
        )
    return sys.executable


def _read_state_unlocked(target: Path) -> st.DeployState | None:
    try:
        return st.read_state(target)
    except DeployError:
        return None  # judged again under the lock


def _to_install(
    layers: Iterable[PublishedLayer],
    state: st.DeployState | None,
    target: Path,
    force: bool,
    compile_bytecode: bool,
) -> list[PublishedLayer]:
    todo = []
    for layer in layers:
        record = state.layers.get(layer.install_target) if state else None
        same = record is not None and record.archive_sha256 == layer.archive_sha256
        # deployed with --no-compile (or by a venvlayers without bytecode): install anew
        lacks_bytecode = compile_bytecode and record is not None and not record.bytecode
        if force or not same or lacks_bytecode or not (target / layer.install_target).is_dir():
            todo.append(layer)
    return todo


def _with_transaction(state: st.DeployState, txn: st.Transaction) -> st.DeployState:
    return replace(state, transaction=txn)


def _layer_result(
    layer: PublishedLayer,
    state: st.DeployState,
    todo: Sequence[PublishedLayer],
    stage: Staging,
    *,
    existed: bool,
) -> LayerResult:
    record = state.layers.get(layer.install_target)
    installed = record.installed_size if record is not None else 0
    action = ("updated" if existed else "installed") if layer in todo else "unchanged"
    compiled = stage.compiled.get(layer.install_target, CompileResult())
    return LayerResult(
        layer.install_target,
        layer.layer_name,
        layer.category,
        action,
        layer.archive_name,
        layer.archive_size,
        installed,
        round(stage.times.get(layer.install_target, 0.0), 3),
        len(compiled.compiled),
        tuple(path for path, _ in compiled.failed),
    )


# -- remove -----------------------------------------------------------------------------


def remove(
    target: Path,
    name: str,
    *,
    lock_timeout: float | None = None,
    reporter: Reporter = NULL_REPORTER,
) -> RemoveResult:
    """Remove the deployed app (or other root layer) `name`, and every layer only it needed."""
    target = Path(target).absolute()
    if st.read_state(target) is None:
        raise DeployError(f"{target} has no venvlayers deployment")
    with st.target_lock(target, timeout=lock_timeout, waiting=reporter.note):
        state = recover(target, st.read_state(target) or st.DeployState(), reporter)
        key = _find_root(state, name, target)
        roots = {k: v for k, v in state.roots.items() if k != key}
        needed = state.needed(roots)
        txn = st.Transaction(
            staging=f"{st.STAGING_PREFIX}{st.new_token()}",
            install=(),
            records={},
            remove=tuple(sorted(n for n in state.layers if n not in needed)),
            roots=roots,
            platform=state.platform or "",
            source=state.source,
            trust=state.trust,
            signed_by=state.signed_by,
        )
        state = st.write_state(target, _with_transaction(state, txn))
        apply_transaction(target, state, reporter)
    return RemoveResult(target, key, txn.remove)


def _find_root(state: st.DeployState, name: str, target: Path) -> str:
    for key, deployed in state.roots.items():
        record = state.layers.get(deployed)
        short = record.short_name if record is not None else key
        if name in (key, deployed, short):
            return key
    if any(name in (r.install_target, r.layer_name) for r in state.layers.values()):
        raise DeployError(
            f"{name!r} is only deployed because other layers need it; remove those instead"
        )
    roots = ", ".join(sorted(state.roots)) or "none"
    raise DeployError(f"nothing named {name!r} is deployed in {target} (deployed: {roots})")
