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

import contextlib
import hashlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import distribution
from .._util.cache import data_root
from .._util.fs import human_size
from .._util.proc import clean_env, run
from ..archives.archive import (
    ExtractedLayer,
    ManifestEntry,
    hash_installed_tree,
    verify_file,
)
from ..bytecode import CompileResult
from ..errors import ArchiveError, DeployError, TransferError
from ..layout import LAYER_CONFIG, POSTINSTALL
from ..names import BuildName, DeployName, LayerCategory
from ..platforms import TargetPlatform, build_platform, suggest_platform
from ..progress import NULL_REPORTER, Reporter
from ..published import PublishedLayer, PublishedStack
from ..selection import Selection
from . import state as st
from .commit import apply_transaction, prune_manifests, recover
from .compiling import StagedCompiles
from .extract import extractor, uses_workers
from .inspection import AppStatus, LayerStatus, TargetStatus, status
from .run import AppCommand, app_command, app_environment, run_app
from .source import StackSource, select_published
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
    "default_run_target",
    "deploy",
    "deploy_for_run",
    "remove",
    "run_app",
    "run_from",
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
            _verify_local(src, layer)
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
        stage = _Staging(target, helper_python, compile_bytecode, reporter)
        state = _prepare_and_record(src, selection, trust, state, todo, stage, plat, verified)
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


def _verify_local(src: StackSource, layer: PublishedLayer) -> Path:
    archive = src.local_archive(layer)
    if not archive.is_file():
        raise DeployError(f"{layer.install_target}: its archive {archive} is missing")
    verify_file(archive, size=layer.archive_size, sha256=layer.archive_sha256)
    return archive


# -- phase 2: prepare -------------------------------------------------------------------


@dataclass
class _Staging:
    """What staging the layers of one deploy needs, and what it found out."""

    target: Path
    helper_python: str | None
    compile_bytecode: bool
    reporter: Reporter
    times: dict[str, float] = field(default_factory=dict)
    compiled: dict[str, CompileResult] = field(default_factory=dict)
    fetched: list[int] = field(default_factory=list)
    """Bytes each remote archive brought over the network."""


def _prepare_and_record(
    src: StackSource,
    selection: Selection[PublishedLayer],
    trust: TrustCheck,
    state: st.DeployState,
    todo: Sequence[PublishedLayer],
    stage: _Staging,
    platform: TargetPlatform,
    verified: set[str],
) -> st.DeployState:
    """Stage every layer in `todo`, then record the transaction that commits them."""
    target, reporter = stage.target, stage.reporter
    token = st.new_token()
    staging = st.state_dir(target) / f"{st.STAGING_PREFIX}{token}"
    # one place for remote archives, kept when a deploy fails or is killed, so that the
    # next one resumes (`Range`) or reuses them instead of fetching them again
    downloads = st.state_dir(target) / st.DOWNLOADS
    try:
        staging.mkdir()
        archives = _fetch_archives(src, todo, verified, downloads, stage.fetched, reporter)
        records = _stage_layers(todo, archives, staging, stage)
        txn = _plan(state, selection, records, staging.name, platform, src, trust)
        state = st.write_state(target, _with_transaction(state, txn))
    except BaseException:
        st.remove_quietly(staging)
        prune_manifests(target, state)  # those of layers staged before the failure
        with contextlib.suppress(OSError):
            downloads.rmdir()  # only when empty: partial downloads stay to be resumed
        raise
    st.remove_quietly(downloads)  # every archive is staged: nothing left to resume
    return state


def _fetch_archives(
    src: StackSource,
    todo: Sequence[PublishedLayer],
    verified: set[str],
    downloads: Path,
    fetched: list[int],
    reporter: Reporter,
) -> dict[DeployName, Path]:
    """The verified archive of each layer to install (downloaded first if remote)."""
    found: dict[DeployName, Path] = {}
    for layer in todo:
        if src.is_local:
            archive = src.local_archive(layer)
            if layer.archive_sha256 not in verified:
                _verify_local(src, layer)
        else:
            downloads.mkdir(exist_ok=True)
            archive = downloads / f"{layer.archive_sha256[:32]}-{layer.archive_name}"
            if not _already_fetched(archive, layer):
                # checked as it streams; resumable
                fetched.append(src.download(layer, archive, reporter))
        found[layer.install_target] = archive
    return found


def _already_fetched(archive: Path, layer: PublishedLayer) -> bool:
    """Whether an earlier, interrupted deploy already downloaded this archive whole."""
    if not archive.is_file():
        return False
    try:
        verify_file(archive, size=layer.archive_size, sha256=layer.archive_sha256)
    except ArchiveError:
        archive.unlink(missing_ok=True)
        return False
    return True


def _stage_layers(
    todo: Sequence[PublishedLayer],
    archives: Mapping[DeployName, Path],
    staging: Path,
    stage: _Staging,
) -> dict[DeployName, st.LayerRecord]:
    """Extract every layer of `todo` into `staging`, compile and finish it there.

    Extractions run in parallel. Each layer's bytecode is compiled as soon as it and
    its runtime are extracted, by worker processes of that runtime's interpreter (one
    per core, shared by the layers), overlapping the remaining extractions. A layer's
    postinstall starts as soon as it and the layers below it are extracted and its
    runtime's postinstall has finished, so postinstalls overlap with each other and
    with the remaining extractions too.
    """
    staged = {layer.install_target for layer in todo}
    for layer in todo:
        for low in layer.lower:
            link = staging / low
            if low not in staged and not os.path.lexists(link):
                # an unchanged layer, seen from the staged ones as their sibling
                os.symlink(f"../../{low}", link)
    started = time.monotonic()
    records: dict[DeployName, st.LayerRecord] = {}
    reporter = stage.reporter
    compiles = StagedCompiles(staging, stage.target, reporter) if stage.compile_bytecode else None

    def finish(layer: PublishedLayer, extracted: ExtractedLayer) -> None:
        layer_dir = staging / layer.install_target
        _run_postinstall(layer, layer_dir, staging, stage.helper_python)
        compiled = CompileResult()
        if compiles is not None:
            compiled = compiles.result(layer)
            stage.compiled[layer.install_target] = compiled
            for path, reason in compiled.failed:
                reporter.note(f"warning: {layer.install_target}: cannot compile {path}: {reason}")
        manifest = _final_manifest(layer_dir, extracted.manifest, compiled.compiled)
        st.write_manifest(stage.target, layer.archive_sha256, manifest)
        records[layer.install_target] = _record(
            layer, layer_dir, manifest, bytecode=stage.compile_bytecode
        )
        stage.times[layer.install_target] = time.monotonic() - started

    order = _extraction_order(todo)
    ok = False
    try:
        with (
            extractor([x.archive_size for x in order], _JOBS, reporter) as submit,
            ThreadPoolExecutor(_JOBS, thread_name_prefix="deploy-finish") as finishing,
        ):
            extractions = {
                x.install_target: submit(
                    x.install_target,
                    archives[x.install_target],
                    staging,
                    compiles.hooks(x) if compiles is not None else None,
                )
                for x in order
            }
            try:
                _schedule(todo, extractions, finishing, finish, compiles)
            except BaseException:
                for future in extractions.values():
                    future.cancel()
                if compiles is not None:
                    compiles.abort()  # an extraction waiting for its compilation gives up
                raise
        ok = True
    finally:
        if compiles is not None:
            compiles.close(ok)
    return {layer.install_target: records[layer.install_target] for layer in todo}


def _extraction_order(todo: Sequence[PublishedLayer]) -> list[PublishedLayer]:
    """The order archives are handed to the extraction lanes.

    In one lane: runtimes first (every other postinstall waits for theirs, and their
    interpreter compiles the rest), then the biggest. With worker processes: the
    biggest first, which the lane in this process takes at once, while the first
    worker is still starting (0.2-0.4 s) for the next, the runtime: the biggest archive
    is the critical path, and the runtime is done long before it anyway.
    """
    runtime_first = sorted(
        todo, key=lambda x: (x.category is not LayerCategory.RUNTIMES, -x.archive_size)
    )
    if not uses_workers([x.archive_size for x in todo], _JOBS):
        return runtime_first
    biggest = max(todo, key=lambda x: x.archive_size)
    return [biggest, *(x for x in runtime_first if x is not biggest)]


def _schedule(
    todo: Sequence[PublishedLayer],
    extractions: Mapping[DeployName, Future[ExtractedLayer]],
    pool: ThreadPoolExecutor,
    finish: Callable[[PublishedLayer, ExtractedLayer], None],
    compiles: StagedCompiles | None = None,
) -> None:
    """Run each layer's `finish` once it can: see `_stage_layers`.

    What a postinstall needs is the runtime's interpreter (finished first, as the
    first layer in install order) and the layers below it unpacked; the protocol's
    simpler rule, lower layers' postinstalls first, is one way to ensure that.
    `compiles` hears when each layer's runtime is unpacked, then when the layer is
    (neither blocks), before the layer's `finish`.
    """
    waiting = list(todo)
    to_open = list(todo) if compiles is not None else []
    to_compile = list(todo) if compiles is not None else []
    running: dict[Future[None], DeployName] = {}
    finished: set[DeployName] = set()
    staged = set(extractions)

    def unpacked(name: DeployName) -> bool:
        return name not in staged or extractions[name].done()

    def ready(layer: PublishedLayer) -> bool:
        runtime = layer.runtime_layer
        staged_runtime = layer.category is not LayerCategory.RUNTIMES and runtime in staged
        if staged_runtime and runtime not in finished:
            return False
        needed = [layer.install_target, *(low for low in layer.lower if low in staged)]
        return all(extractions[name].done() for name in needed)

    while waiting or running:
        for layer in list(to_open):
            if unpacked(layer.runtime_layer):
                assert compiles is not None
                to_open.remove(layer)
                compiles.runtime_ready(layer)
        for layer in list(to_compile):
            if layer not in to_open and unpacked(layer.install_target):
                assert compiles is not None
                to_compile.remove(layer)
                compiles.extracted(layer, extractions[layer.install_target].result())
        for layer in list(waiting):
            if ready(layer) and layer not in to_compile:
                waiting.remove(layer)
                extracted = extractions[layer.install_target].result()
                running[pool.submit(finish, layer, extracted)] = layer.install_target
        unfinished: set[Future[Any]] = set()
        for layer in waiting:
            extraction = extractions[layer.install_target]
            if not extraction.done():
                unfinished.add(extraction)
            elif extraction.exception() is not None:
                extraction.result()  # a failed extraction stops the deploy at once
        # never a done extraction: wait() would return at once, and this loop spin
        watch = unfinished | set(running)
        if not watch:
            raise DeployError(f"cannot order the postinstalls of {', '.join(map(str, waiting))}")
        done, _ = wait(watch, return_when=FIRST_COMPLETED)
        for future in done:
            future.result()  # the first failure stops the deploy
            name = running.pop(future, None)
            if name is not None:
                finished.add(name)


def _run_postinstall(
    layer: PublishedLayer, layer_dir: Path, staging: Path, helper_python: str | None
) -> None:
    """Run the layer's postinstall.py with its runtime's python, as the protocol says."""
    script = layer_dir / POSTINSTALL
    if not script.is_file():
        raise DeployError(f"{layer.install_target}: the archive has no {POSTINSTALL}")
    config = _layer_config(layer_dir, layer)
    if helper_python is not None:
        python = helper_python
    else:
        python = _layer_python(layer, layer_dir, staging, config)
    run(
        # -B: the bytecode a deploy leaves is the checked-hash kind it compiles itself
        # (older postinstalls ignore --no-compile, and compile nothing anyway)
        [python, "-I", "-B", str(script), "--no-compile"],
        what=f"postinstall of {layer.install_target}",
        error=DeployError,
        env=clean_env(),
    )


def _layer_python(
    layer: PublishedLayer, layer_dir: Path, staging: Path, config: Mapping[str, Any]
) -> str:
    """The runtime interpreter a staged layer's config names, checked to be the runtime's."""
    key = "python" if layer.category is LayerCategory.RUNTIMES else "base_python"
    relative = config.get(key)
    if not isinstance(relative, str):
        raise DeployError(f"{layer.install_target}: its layer config has no {key!r}")
    own = layer.install_target if key == "python" else layer.runtime_layer
    resolved = os.path.normpath(layer_dir / relative)
    if not resolved.startswith(os.fspath(staging / own) + os.sep):
        raise DeployError(
            f"{layer.install_target}: {key} {relative!r} does not point into layer {own!r}"
        )
    return resolved


def _layer_config(layer_dir: Path, layer: PublishedLayer) -> dict[str, Any]:
    path = layer_dir / LAYER_CONFIG
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise DeployError(
            f"{layer.install_target}: cannot read its {LAYER_CONFIG}: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise DeployError(f"{layer.install_target}: {LAYER_CONFIG} is not a JSON object")
    return data


def _final_manifest(
    layer_dir: Path, extracted: tuple[ManifestEntry, ...], compiled: tuple[ManifestEntry, ...]
) -> tuple[ManifestEntry, ...]:
    """The extracted files, the bytecode compiled for them, and what postinstall made.

    Only postinstall's entries are hashed here: the compiler reports the sha256 of
    each `.pyc` it wrote. A compiled `.pyc` replaces a shipped one of the same path.
    """
    known = {entry.path for entry in extracted}

    def exclude(path: str) -> bool:
        return path in known or path.rpartition("/")[2] == "__pycache__"

    added = hash_installed_tree(layer_dir, exclude=exclude, threads=1)
    if not added and not compiled:
        return extracted
    by_path = {entry.path: entry for entry in (*extracted, *added, *compiled)}
    return tuple(by_path[path] for path in sorted(by_path))


def _record(
    layer: PublishedLayer, layer_dir: Path, manifest: Sequence[ManifestEntry], *, bytecode: bool
) -> st.LayerRecord:
    return st.LayerRecord(
        install_target=layer.install_target,
        layer_name=layer.layer_name,
        category=layer.category,
        runtime_layer=layer.runtime_layer,
        required_layers=layer.required_layers,
        archive_name=layer.archive_name,
        archive_sha256=layer.archive_sha256,
        archive_size=layer.archive_size,
        lock_version=layer.lock_version,
        launch_module=layer.launch_module,
        installed_size=sum(entry.size for entry in manifest),
        file_count=len(manifest),
        deployed_at=st.now(),
        inode=st.inode(layer_dir),
        bytecode=bytecode,
    )


def _plan(
    state: st.DeployState,
    selection: Selection[PublishedLayer],
    records: Mapping[DeployName, st.LayerRecord],
    staging: str,
    platform: TargetPlatform,
    src: StackSource,
    trust: TrustCheck,
) -> st.Transaction:
    new_roots = {str(layer.layer_name): layer.install_target for layer in selection.matched}
    roots = new_roots if selection.full else {**state.roots, **new_roots}
    after = st.DeployState(roots=roots, layers={**state.layers, **records})
    needed = after.needed()
    remove = tuple(sorted(name for name in after.layers if name not in needed))
    install = tuple(
        layer.install_target for layer in selection.layers if layer.install_target in records
    )
    return st.Transaction(
        staging=staging,
        install=install,
        records=dict(records),
        remove=remove,
        roots=roots,
        platform=str(platform),
        source=src.text,
        trust=trust.keys,
        signed_by=trust.signed_by,
    )


def _with_transaction(state: st.DeployState, txn: st.Transaction) -> st.DeployState:
    return replace(state, transaction=txn)


def _layer_result(
    layer: PublishedLayer,
    state: st.DeployState,
    todo: Sequence[PublishedLayer],
    stage: _Staging,
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


def run_from(
    source: str | Path,
    app: str,
    *,
    args: Sequence[str] = (),
    target: Path | None = None,
    trusted_keys: Path | None = None,
    insecure: bool = False,
    reporter: Reporter = NULL_REPORTER,
) -> int:
    """Deploy what `app` needs from `source` (only what is missing), then run it.

    Like `pipx run` for a layered stack: `deploy_for_run`, then `run_app` there.
    Returns the app's exit code.
    """
    where = deploy_for_run(
        source,
        app,
        target=target,
        trusted_keys=trusted_keys,
        insecure=insecure,
        reporter=reporter,
    )
    return run_app(app, location=where, args=args)


def deploy_for_run(
    source: str | Path,
    app: str,
    *,
    target: Path | None = None,
    trusted_keys: Path | None = None,
    insecure: bool = False,
    reporter: Reporter = NULL_REPORTER,
) -> Path:
    """Deploy what `app` needs from `source` (only what is missing); the deployment.

    The deployment goes to `target`, by default a per-user directory for the source
    (`default_run_target`), so a second run fetches nothing and a new release fetches
    only the layers that changed. When the source cannot be reached but the app was
    deployed before, that copy is used (with a note); a deploy that changed something
    is noted in one line. A caller that shows progress
    stops showing it before it starts the app, whose output is the user's.
    """
    target = target if target is not None else default_run_target(source)
    try:
        result = deploy(
            source,
            target,
            apps=[app],
            trusted_keys=trusted_keys,
            insecure=insecure,
            reporter=reporter,
        )
        if result.changed:  # else say nothing: the app's output is what the user wants
            fetched = f", {human_size(result.fetched)} fetched" if result.fetched else ""
            reporter.note(
                f"deployed {len(result.changed)} of {len(result.layers)} layers for {app} "
                f"into {target} ({result.seconds:.1f}s{fetched})"
            )
    except TransferError as exc:
        state = st.read_state(target) if target.is_dir() else None
        if state is None or not state.layers:
            raise
        reporter.note(f"warning: {exc}; running what is deployed in {target}")
    return target


def default_run_target(source: str | Path) -> Path:
    """Where `run --from SOURCE` deploys: one directory per source, tag or digest aside.

    Releases of one repository share a directory, so their common layers are shared
    and an update fetches only what changed.
    """
    text = str(source)
    if isinstance(source, str) and distribution.is_reference(text):
        ref = distribution.parse_reference(text)
        if isinstance(ref, distribution.RegistryReference):
            base = f"oci://{ref.host}/{ref.repository}"
        else:
            base = f"oci-layout:{ref.path.absolute() if ref.path is not None else ref.url}"
    elif isinstance(source, str) and "://" in text:
        base = text.rstrip("/")
    else:
        base = str(Path(text).absolute())
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", base.split("://", 1)[-1]).strip("-.")[-60:]
    digest = hashlib.sha256(base.encode()).hexdigest()[:10]
    return data_root() / "run" / f"{slug}-{digest}"


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
