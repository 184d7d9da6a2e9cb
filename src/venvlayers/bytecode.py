"""Compiling a layer's bytecode with the layer's own interpreter, on every core.

The compiler is `postinstall.py --compile-worker` (`_injected/postinstall.py`, stdlib
only): the same code a layer's postinstall runs when an embedding application installs
it by hand. Here it runs as long-lived worker processes of the runtime's interpreter,
started with `-I` and a scrubbed environment, that take batches of files from any
number of layers, so that one layer's compilation overlaps the extraction of the next.

The `.pyc` files are checked-hash ones (PEP 552): valid after the layer is moved or
copied (no mtimes involved), never rewritten at start-up, and ignored in favour of the
source when a user edits a deployed `.py`. Measured on the numpy/scipy/pandas/sklearn
stack: checking the hashes costs ~27 ms for the 1355 modules (32 MB of source) an app
imports, ~2% of its start; timestamp pycs would break on `cp -r`, and unchecked ones
would run stale code after an edit.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ._util.proc import clean_env, stop_worker
from .archives.common import ManifestEntry
from .errors import VenvLayersError
from .layout import POSTINSTALL_SOURCE

__all__ = [
    "BATCH",
    "COMPILER",
    "SHIPPED_SHARE",
    "CompileJob",
    "CompileResult",
    "Compiler",
    "compile_layer",
    "cpu_count",
    "layer_sources",
    "shipped_bytecode",
    "shipping_threshold",
    "source_files",
    "source_of_pyc",
]

COMPILER = POSTINSTALL_SOURCE
BATCH = 48
"""Files per request: enough that passing requests costs little, few enough to spread."""


@dataclass(frozen=True)
class CompileResult:
    """What compiling one layer did: new `.pyc` files, shipped ones kept, sources refused."""

    compiled: tuple[ManifestEntry, ...] = ()
    kept: int = 0
    failed: tuple[tuple[str, str], ...] = ()
    """(layer-relative `.py` path, reason), sorted by path."""


def source_files(entries: Iterable[ManifestEntry], site_dir: str) -> list[str]:
    """The `.py` files of a layer's manifest that get bytecode: regular files below the
    top folder of `site_dir` (`lib/`, `Lib/`), as postinstall's own walk picks them."""
    top = site_dir.replace("\\", "/").split("/")[0] + "/"
    return sorted(
        e.path
        for e in entries
        if e.kind == "file" and e.path.endswith(".py") and e.path.startswith(top)
    )


def layer_sources(layer_dir: Path, site_dir: str) -> list[str]:
    """`source_files` of a layer on disk (symlinks and `__pycache__` left out)."""
    top = site_dir.replace("\\", "/").split("/")[0]
    found: list[str] = []
    for parent, dirs, files in os.walk(layer_dir / top):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        rel = Path(parent).relative_to(layer_dir).as_posix()
        found.extend(
            f"{rel}/{name}"
            for name in files
            if name.endswith(".py") and not os.path.islink(os.path.join(parent, name))
        )
    return sorted(found)


# -- which bytecode an archive ships ----------------------------------------------------
#
# Compiling is most of a deploy's CPU time, and compile time follows source size, so an
# archive may ship the bytecode of its largest modules and leave the rest to the deploy.
# The rule is recorded in the metadata (`archive_options.bytecode`): `false` (none),
# `true` (every module) or `{"min_source_bytes": N}` (the modules of N bytes or more), so
# a deploy knows which `.py` files have their `.pyc` in the archive before it sees them.

SHIPPED_SHARE = 1 / 3
"""The default share of a layer's Python source whose bytecode publish ships: measured on
the numpy/scipy/pandas/scikit-learn stack, it cuts a third of the deploy's compile time
for archives 1.13x larger (1.33x `tar.xz -6` in all, against a target of 1.35x)."""


def shipping_threshold(sizes: Iterable[int], share: float) -> int | None:
    """The smallest size N such that the sources of N bytes or more hold at most `share`
    of all the source bytes (None: not even the largest module fits)."""
    ordered = sorted(sizes, reverse=True)
    budget = share * sum(ordered)
    total = 0
    threshold: int | None = None
    for index, size in enumerate(ordered):
        if total + size > budget:
            break
        total += size
        if index + 1 == len(ordered) or ordered[index + 1] < size:
            threshold = size  # only whole groups of equal size: the rule is "N or more"
    return threshold


def shipped_bytecode(options: object) -> bool | int:
    """From `archive_options`: True (all), False (none) or the `min_source_bytes` rule.

    Anything else (older or foreign metadata) counts as True: the archive may ship any
    `.pyc`, so none is compiled before it is unpacked.
    """
    if not isinstance(options, dict):
        return True
    value = options.get("bytecode")
    if isinstance(value, bool):
        return value
    if isinstance(value, dict) and isinstance(value.get("min_source_bytes"), int):
        return int(value["min_source_bytes"])
    return True


def source_of_pyc(rel: str) -> str | None:
    """`pkg/mod.py` for `pkg/__pycache__/mod.cpython-311.pyc` (None for other paths)."""
    parent, _, name = rel.rpartition("/")
    folder, _, cache = parent.rpartition("/")
    if cache != "__pycache__" or not name.endswith(".pyc"):
        return None
    stem = name[: -len(".pyc")].rsplit(".", 1)[0]  # drop the interpreter tag
    return f"{folder}/{stem}.py" if folder else f"{stem}.py"


@dataclass
class _Job:
    layer_dir: Path
    names_dir: Path | None
    pending: int
    future: Future[CompileResult]
    progress: Callable[[Sequence[str]], None] | None
    compiled: list[ManifestEntry] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    kept: int = 0
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class _Request:
    job: _Job
    paths: tuple[str, ...]


class Compiler:
    """Worker processes of one interpreter compiling batches of layer files.

    `submit(layer_dir, paths)` returns a future of the layer's `CompileResult`; the
    workers start on the first submission. Leaving the `with` block waits for them;
    `abort()` kills them (a failed deploy wants none of their output). A worker that
    dies fails the layers it was compiling with `error`.
    """

    def __init__(
        self,
        python: Path,
        *,
        jobs: int,
        error: type[VenvLayersError],
        env: Mapping[str, str] | None = None,
        reproducible: bool = False,
    ) -> None:
        self.python = python
        self.jobs = max(1, jobs)
        self.reproducible = reproducible
        """Bytes that depend only on source and interpreter (for archives; slower)."""
        self._error = error
        self._env = dict(env) if env is not None else clean_env()
        self._empty: tempfile.TemporaryDirectory[str] | None = None
        self._requests: queue.Queue[_Request | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._procs: list[subprocess.Popen[str]] = []
        self._lock = threading.Lock()
        self._aborted = False

    def __enter__(self) -> Compiler:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is not None:
            self.abort()
        self.close()

    def submit(
        self,
        layer_dir: Path,
        paths: Sequence[str],
        progress: Callable[[Sequence[str]], None] | None = None,
        *,
        names_dir: Path | None = None,
    ) -> Future[CompileResult]:
        """Compile `paths` (relative to `layer_dir`); `progress` hears of each finished batch.

        `names_dir`: where the layer will be used, for the file names in the code
        (a layer staged elsewhere and moved there then loads without renaming them);
        default: layer-relative names.
        """
        job = self.open_job(layer_dir, progress, names_dir=names_dir)
        job.add(paths)
        return job.finish()

    def open_job(
        self,
        layer_dir: Path,
        progress: Callable[[Sequence[str]], None] | None = None,
        *,
        names_dir: Path | None = None,
    ) -> CompileJob:
        """A layer whose files are added as they become known (see `submit`)."""
        future: Future[CompileResult] = Future()
        future.set_running_or_notify_cancel()
        return CompileJob(self, _Job(layer_dir, names_dir, 0, future, progress))

    def _put(self, job: _Job, batch: tuple[str, ...]) -> None:
        with self._lock:
            aborted = self._aborted
        if aborted:  # no worker will take it: fail now rather than leave it waiting
            self._fail(job, OSError("compilation aborted"))
            return
        with job.lock:
            job.pending += 1
        self._requests.put(_Request(job, batch))
        self._start(min(self.jobs, self._requests.qsize() + len(self._threads)))

    def close(self) -> None:
        """Let the workers finish what was submitted, then stop them."""
        for _ in self._threads:
            self._requests.put(None)
        for thread in self._threads:
            thread.join()
        if self._empty is not None:
            self._empty.cleanup()

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            for proc in self._procs:
                with contextlib.suppress(OSError):
                    proc.kill()

    def _start(self, wanted: int) -> None:
        with self._lock:
            while len(self._threads) < wanted and not self._aborted:
                thread = threading.Thread(
                    target=self._serve, name=f"compile-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def _serve(self) -> None:
        """One worker process for the life of this thread (its death signal follows us)."""
        proc: subprocess.Popen[str] | None = None
        try:
            while (request := self._requests.get()) is not None:
                job = request.job
                if job.future.done():
                    continue  # an earlier batch of this layer failed
                try:
                    if proc is None or proc.poll() is not None:
                        proc = self._spawn()
                    reply = _ask(proc, job, request.paths)
                    if job.progress is not None:
                        job.progress(request.paths)
                    self._record(job, reply)
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    self._fail(job, exc)
        finally:
            if proc is not None:
                stop_worker(proc)

    def _spawn(self) -> subprocess.Popen[str]:
        with self._lock:
            if self._aborted:
                raise OSError("compilation aborted")
            command = [os.fspath(self.python), "-I", os.fspath(COMPILER), "--compile-worker"]
            if self.reproducible:
                # what the worker imports is compiled from source (an empty pycache
                # prefix, nothing written), never loaded from a .pyc of unknown making
                if self._empty is None:
                    self._empty = tempfile.TemporaryDirectory(prefix="venvlayers-nopyc-")
                isolation = ["-S", "-B", "-X", f"pycache_prefix={self._empty.name}"]
                command[2:2] = isolation
                command.append("--reproducible")
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                encoding="utf-8",
                env=self._env,
            )
            self._procs.append(proc)
        return proc

    def _record(self, job: _Job, reply: Mapping[str, Any]) -> None:
        with job.lock:
            for path, size, sha256, mode in reply["compiled"]:
                job.compiled.append(ManifestEntry(str(path), "file", int(size), str(sha256), mode))
            job.failed.extend((str(path), str(reason)) for path, reason in reply["failed"])
            job.kept += int(reply["kept"])
            job.pending -= 1
            _settle(job)

    def _fail(self, job: _Job, exc: BaseException) -> None:
        with job.lock:
            if not job.future.done():
                detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                job.future.set_exception(
                    self._error(
                        f"{job.layer_dir.name}: compiling its bytecode with {self.python} "
                        f"failed ({detail})"
                    )
                )


class CompileJob:
    """One layer's compilation, fed in pieces: `add` paths, then `finish` once."""

    def __init__(self, compiler: Compiler, job: _Job) -> None:
        self._compiler = compiler
        self._job = job
        self._buffer: list[str] = []

    def add(self, paths: Iterable[str]) -> None:
        """Queue `paths` for compiling (in batches; not thread-safe: one feeder)."""
        self._buffer.extend(paths)
        while len(self._buffer) >= BATCH:
            batch, self._buffer = tuple(self._buffer[:BATCH]), self._buffer[BATCH:]
            self._compiler._put(self._job, batch)

    def finish(self) -> Future[CompileResult]:
        """No more paths: the future of the layer's result."""
        if self._buffer:
            batch, self._buffer = tuple(self._buffer), []
            self._compiler._put(self._job, batch)
        with self._job.lock:
            self._job.closed = True
            _settle(self._job)
        return self._job.future


def _settle(job: _Job) -> None:
    """Resolve a closed job's future once its last batch is back (caller holds job.lock)."""
    if job.closed and job.pending == 0 and not job.future.done():
        job.future.set_result(
            CompileResult(
                tuple(sorted(job.compiled, key=lambda e: e.path)),
                job.kept,
                tuple(sorted(job.failed)),
            )
        )


def _ask(proc: subprocess.Popen[str], job: _Job, paths: Sequence[str]) -> dict[str, Any]:
    stdin: IO[str] | None = proc.stdin
    stdout: IO[str] | None = proc.stdout
    assert stdin is not None and stdout is not None
    names = os.fspath(job.names_dir) if job.names_dir is not None else None
    request = {"layer": os.fspath(job.layer_dir), "paths": list(paths), "names": names}
    try:
        stdin.write(json.dumps(request) + "\n")
        stdin.flush()
    except BrokenPipeError:
        raise OSError("the compiler process died") from None
    line = stdout.readline()
    if not line:
        raise OSError("the compiler process died")
    reply = json.loads(line)
    if not isinstance(reply, dict):
        raise ValueError("unexpected reply from the compiler process")
    return reply


def compile_layer(
    python: Path,
    layer_dir: Path,
    paths: Sequence[str],
    *,
    error: type[VenvLayersError],
    jobs: int = 0,
    names_dir: Path | None = None,
    reproducible: bool = False,
) -> CompileResult:
    """Compile `paths` (relative to `layer_dir`) with `python`, waiting for the result.

    `reproducible`: every file compiled again, alone (see `Compiler.reproducible`).
    """
    jobs = jobs or cpu_count()
    with Compiler(python, jobs=jobs, error=error, reproducible=reproducible) as compiler:
        return compiler.submit(layer_dir, paths, names_dir=names_dir).result()


def cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
