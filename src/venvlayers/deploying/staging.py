"""Phase 2 of a deploy, under the target's lock: fetch, unpack, compile, finish, record.

Every changed layer is fetched (remote sources) and verified, extracted into
`TARGET/.venvlayers/staging-<token>/<install_target>` with the archive extractor's
containment checks, compiled with its runtime's interpreter (`venvlayers.bytecode`) and
finished by its `postinstall.py` there; unchanged layers the staged ones need appear as
links to their deployed directories. Nothing a user sees changes until the transaction
this phase records is committed (`commit`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .._util.proc import clean_env, run
from ..archives.archive import (
    ExtractedLayer,
    ManifestEntry,
    hash_installed_tree,
    verify_file,
)
from ..bytecode import CompileResult
from ..errors import ArchiveError, DeployError
from ..layout import POSTINSTALL
from ..names import DeployName, LayerCategory
from ..platforms import TargetPlatform
from ..progress import Reporter
from ..published import PublishedLayer
from ..selection import Selection
from . import state as st
from .commit import prune_manifests
from .compiling import StagedCompiles
from .extract import extractor, uses_workers
from .source import StackSource
from .trust import TrustCheck

__all__ = ["Staging", "prepare_and_record", "verify_local"]

_LOG = logging.getLogger(__name__)
_JOBS = 2  # extraction is GIL-bound in part: more threads than this buy little


def verify_local(src: StackSource, layer: PublishedLayer) -> Path:
    archive = src.local_archive(layer)
    if not archive.is_file():
        raise DeployError(f"{layer.install_target}: its archive {archive} is missing")
    verify_file(archive, size=layer.archive_size, sha256=layer.archive_sha256)
    return archive


# -- phase 2: prepare -------------------------------------------------------------------


@dataclass
class Staging:
    """What staging the layers of one deploy needs, and what it found out."""

    target: Path
    helper_python: str | None
    compile_bytecode: bool
    reporter: Reporter
    times: dict[str, float] = field(default_factory=dict)
    compiled: dict[str, CompileResult] = field(default_factory=dict)
    fetched: list[int] = field(default_factory=list)
    """Bytes each remote archive brought over the network."""


def prepare_and_record(
    src: StackSource,
    selection: Selection[PublishedLayer],
    trust: TrustCheck,
    state: st.DeployState,
    todo: Sequence[PublishedLayer],
    stage: Staging,
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
        state = st.write_state(target, replace(state, transaction=txn))
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
                verify_local(src, layer)
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
    stage: Staging,
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
    config = st.read_layer_config(layer_dir, layer.install_target)
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
