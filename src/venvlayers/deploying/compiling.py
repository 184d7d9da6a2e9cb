"""The bytecode of a deploy's staged layers, compiled while the layers are still unpacking.

Each layer is compiled by worker processes of its runtime's interpreter (one pool per
runtime, one worker per core; see `venvlayers.bytecode`) as soon as that runtime is
unpacked. A layer unpacked in this process feeds its `.py` files to the workers as
they are written, so its compilation overlaps its own extraction (the biggest layer's,
which is the deploy's critical path); a layer unpacked by a worker process is compiled
when its extraction returns.

Only sources whose bytecode the archive does not ship are compiled while unpacking:
all of them when its metadata says it ships none (`archive_options.bytecode` false),
those smaller than `min_source_bytes` when it ships the largest modules' (the default);
the others are compiled, if the archive did not bring a valid `.pyc` after all, once
the layer is unpacked. Otherwise a `.pyc` compiled early could meet the archive's own
copy of it. An archive that lies about it fails to extract (files are created
exclusively): it cannot mix the two.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from .._util.proc import clean_env
from ..archives.archive import ExtractedLayer
from ..bytecode import (
    CompileJob,
    Compiler,
    CompileResult,
    cpu_count,
    shipped_bytecode,
    source_files,
)
from ..errors import DeployError
from ..names import DeployName, LayerCategory
from ..progress import Reporter
from ..published import PublishedLayer
from . import state as st
from .extract import Unpacking

__all__ = ["StagedCompiles"]

_SOURCE_TOPS = ("lib/", "Lib/")  # where `site_dir` starts, before the config is unpacked


@dataclass
class _Layer:
    compiler: Compiler | None = None  # once its runtime is unpacked
    job: CompileJob | None = None  # once there is something to compile
    buffer: list[str] = field(default_factory=list)  # written before the runtime was
    seen: set[str] = field(default_factory=set)
    future: Future[CompileResult] | None = None
    opened: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Stream:
    """`Unpacking` hooks: files go to the compiler as they are written, and the layer
    moves beside the others only once they are compiled (their paths name its
    extraction directory until then). Only called if the layer is unpacked in this
    process; otherwise `StagedCompiles.extracted` compiles it in its final place."""

    def __init__(
        self, owner: StagedCompiles, layer: PublishedLayer, state: _Layer, shipped_from: int | None
    ) -> None:
        self._owner = owner
        self._layer = layer
        self._state = state
        self._shipped_from = shipped_from  # sources this big may bring their own .pyc
        self._root = owner.extraction_dir(layer)

    def on_file(self, path: str) -> None:
        if not (path.endswith(".py") and path.startswith(_SOURCE_TOPS)):
            return
        if self._shipped_from is not None:
            try:
                size = os.stat(os.path.join(self._root, path)).st_size
            except OSError:
                size = self._shipped_from
            if size >= self._shipped_from:
                return  # compiled, if need be, once the layer is unpacked
        state = self._state
        with state.lock:
            state.seen.add(path)
            job = self._owner.streaming_job(self._layer, state)
            if job is not None:
                job.add((path,))
            else:
                state.buffer.append(path)

    def unpacked(self, layer: ExtractedLayer) -> None:
        state = self._state
        while not state.opened.wait(0.1):  # its runtime is still unpacking
            if self._owner.aborted.is_set():
                raise DeployError(f"{self._layer.install_target}: compilation abandoned")
        site_dir = _site_dir(layer.path, self._layer)
        with state.lock:
            job = self._owner.streaming_job(self._layer, state)
            assert job is not None
            job.add(state.buffer)
            state.buffer.clear()
            job.add(p for p in source_files(layer.manifest, site_dir) if p not in state.seen)
            state.future = job.finish()
        while True:  # raises if compiling failed: the extraction fails with it
            try:
                state.future.result(timeout=0.1)
                return
            except TimeoutError:
                if self._owner.aborted.is_set():
                    raise DeployError(
                        f"{self._layer.install_target}: compilation abandoned"
                    ) from None


class StagedCompiles:
    """Compilation of the layers staged in `staging`, to be used from `target`.

    Pass `hooks(layer)` to the extractor, call `runtime_ready` once the layer's runtime
    is unpacked, `extracted` once the layer is, then `result`. `abort()` makes waiting
    hooks give up; `close(ok)` stops the workers (killing them unless `ok`).
    """

    def __init__(self, staging: Path, target: Path, reporter: Reporter) -> None:
        self._staging = staging
        self._target = target
        self._reporter = reporter
        self._compilers: dict[str, Compiler] = {}
        self._layers: dict[DeployName, _Layer] = {}
        self.aborted = threading.Event()

    def hooks(self, layer: PublishedLayer) -> Unpacking | None:
        """Hooks that compile `layer` while it unpacks, or None (compiled once unpacked).

        Not for runtimes (their interpreter exists only once they are unpacked), nor for
        archives that do or may ship bytecode.
        """
        state = self._layers.setdefault(layer.install_target, _Layer())
        shipped = shipped_bytecode(layer.metadata.get("archive_options"))
        if layer.category is LayerCategory.RUNTIMES or shipped is True:
            return None
        return _Stream(self, layer, state, None if shipped is False else shipped)

    def runtime_ready(self, layer: PublishedLayer) -> None:
        """The layer's runtime is unpacked: start compiling what is there already."""
        state = self._layers.setdefault(layer.install_target, _Layer())
        python = self._runtime_python(layer.runtime_layer)
        compiler = self._compilers.get(python)
        if compiler is None:
            compiler = self._compilers[python] = Compiler(
                Path(python), jobs=cpu_count(), error=DeployError, env=clean_env()
            )
        key = f"compile:{layer.install_target}"
        self._reporter.begin(key, f"compiling {layer.install_target}")
        with state.lock:
            state.compiler = compiler
            if state.buffer:  # being unpacked here: compile where it is unpacked
                job = self.streaming_job(layer, state)
                assert job is not None
                job.add(state.buffer)
                state.buffer.clear()
        state.opened.set()

    def extraction_dir(self, layer: PublishedLayer) -> Path:
        """Where a layer unpacked in this process is written before it moves."""
        name = layer.install_target
        return self._staging / f".extract-{name}" / name

    def streaming_job(self, layer: PublishedLayer, state: _Layer) -> CompileJob | None:
        """The job of a layer unpacked in this process (caller holds `state.lock`)."""
        if state.job is None and state.compiler is not None:
            state.job = state.compiler.open_job(
                self.extraction_dir(layer), names_dir=self._target / layer.install_target
            )
        return state.job

    def extracted(self, layer: PublishedLayer, extracted: ExtractedLayer) -> None:
        """The layer is unpacked (and, if streamed, compiled): compile it if it was not."""
        state = self._layers[layer.install_target]
        if state.future is None:  # unpacked by a worker process: compile it in place
            assert state.compiler is not None and state.job is None, "runtime_ready first"
            name = layer.install_target
            job = state.compiler.open_job(self._staging / name, names_dir=self._target / name)
            job.add(source_files(extracted.manifest, _site_dir(self._staging / name, layer)))
            state.future = job.finish()
        key = f"compile:{layer.install_target}"

        def done(future: Future[CompileResult]) -> None:
            self._reporter.end(key, "failed" if future.exception() else "done")

        state.future.add_done_callback(done)

    def result(self, layer: PublishedLayer) -> CompileResult:
        state = self._layers.get(layer.install_target)
        if state is None or state.future is None:
            return CompileResult()
        return state.future.result()

    def abort(self) -> None:
        self.aborted.set()
        for compiler in self._compilers.values():
            compiler.abort()

    def close(self, ok: bool) -> None:
        if not ok:
            self.abort()  # its output is about to be deleted with the staging dir
        for compiler in self._compilers.values():
            compiler.close()

    def _runtime_python(self, runtime: DeployName) -> str:
        """The runtime layer's own interpreter (its config's `python`), inside that layer."""
        runtime_dir = self._staging / runtime  # staged, or a link to the deployed one
        relative = st.read_layer_config(runtime_dir, runtime).get("python")
        if not isinstance(relative, str):
            raise DeployError(f"{runtime}: its layer config has no 'python'")
        resolved = os.path.normpath(runtime_dir / relative)
        if not resolved.startswith(os.fspath(runtime_dir) + os.sep):
            raise DeployError(f"{runtime}: python {relative!r} does not point into the layer")
        return resolved


def _site_dir(layer_dir: Path, layer: PublishedLayer) -> str:
    site_dir = st.read_layer_config(layer_dir, layer.install_target).get("site_dir")
    if not isinstance(site_dir, str):
        raise DeployError(f"{layer.install_target}: its layer config has no 'site_dir'")
    return site_dir
