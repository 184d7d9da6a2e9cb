"""Extracting the layers of a deploy in parallel, in lanes of threads and worker processes.

Extraction is largely Python work per archive member (headers, checks, hashing), so
threads of one process share one core's worth of it. When two or more big archives
are to be extracted, every lane but the first hands its archives to a worker process
of its own. Workers are plain subprocesses of this interpreter speaking JSON lines on
stdin/stdout (not `multiprocessing`, which would import the caller's `__main__` in each
worker: an embedding script without a main guard would deploy again from there). They
die with the deploy, so none can still be writing into a staging directory that the
next deploy deletes.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from .._util.proc import stop_worker
from ..archives.archive import ExtractedLayer, extract_archive
from ..archives.common import ManifestEntry
from ..errors import ArchiveError, DeployError, VenvLayersError
from ..progress import NULL_REPORTER, Reporter

__all__ = ["Unpacking", "extract_layer", "extractor", "uses_workers", "worker_main"]

PROCESS_THRESHOLD = 4 << 20
"""Compressed bytes from which an archive is worth a worker (which takes ~0.2 s to start)."""

_PROGRESS_STEP = 1 << 20
_PARENT_ENV = "VENVLAYERS_DEPLOY_PARENT"
_BOOT = (
    "import json, sys; sys.path[:0] = json.loads(sys.stdin.readline()); "
    "from venvlayers.deploying.extract import worker_main; worker_main()"
)


class Unpacking(Protocol):
    """What a caller does while a layer is unpacked in this process (see `extractor`)."""

    def on_file(self, path: str) -> None:
        """A regular file (path below the layer) is completely written."""

    def unpacked(self, layer: ExtractedLayer) -> None:
        """Everything is written, at `layer.path`, not yet moved beside the other layers."""


Submit = Callable[[str, Path, Path, "Unpacking | None"], "Future[ExtractedLayer]"]


def extract_layer(
    install_target: str,
    archive: Path,
    staging: Path,
    reporter: Reporter = NULL_REPORTER,
    hooks: Unpacking | None = None,
) -> ExtractedLayer:
    """Extract into an empty directory of its own, then move the top folder beside the others.

    `extract_archive` wants an empty destination; the layer must end up as
    `staging/<install_target>`, a sibling of the other staged layers. `hooks` hear of
    each file as it is written, then of the whole layer before it moves.
    """
    container = staging / f".extract-{install_target}"
    container.mkdir()
    result = extract_archive(
        archive,
        container,
        expected_root=install_target,
        reporter=reporter,
        report_key=f"deploy:{install_target}",
        report_label=_label(install_target),
        on_file=hooks.on_file if hooks is not None else None,
    )
    if hooks is not None:
        hooks.unpacked(result)
    os.rename(result.path, staging / install_target)
    container.rmdir()
    return ExtractedLayer(staging / install_target, result.root_name, result.manifest)


def _label(install_target: str) -> str:
    # the layer's name: a remote archive is staged under a digest-prefixed file name
    return f"extract {install_target}"


@dataclass(frozen=True)
class _Task:
    install_target: str
    archive: Path
    staging: Path
    future: Future[ExtractedLayer]
    hooks: Unpacking | None = None


def uses_workers(sizes: Sequence[int], jobs: int) -> bool:
    """Whether `extractor` hands archives of these sizes to worker processes."""
    big = sum(1 for size in sizes if size >= PROCESS_THRESHOLD)
    return big >= 2 and jobs >= 2 and os.name == "posix"


@contextlib.contextmanager
def extractor(sizes: Sequence[int], jobs: int, reporter: Reporter) -> Iterator[Submit]:
    """`submit(install_target, archive, staging, hooks)` for archives of these `sizes`.

    Archives are extracted in submission order, in `jobs` lanes when worker processes
    are worth it (lane 0 in this process, the others each in a worker), else in one.
    `hooks` are called for archives extracted in this process only: a worker's files
    are known when its result arrives.

    Leaving the context waits for the lanes; after a failure, workers are killed
    rather than left to finish archives whose results nobody wants.
    """
    use_workers = uses_workers(sizes, jobs)
    tasks: queue.Queue[_Task | None] = queue.Queue()
    workers: list[subprocess.Popen[str]] = []
    workers_lock = threading.Lock()
    stopping = threading.Event()

    def lane(index: int) -> None:
        worker = _ready_worker() if index > 0 else None  # None: extract in this process
        if worker is not None:
            with workers_lock:
                workers.append(worker)
        try:
            while (task := tasks.get()) is not None:
                if not task.future.set_running_or_notify_cancel():
                    continue
                try:
                    if worker is not None:
                        result = _in_worker(worker, task, reporter)
                    else:
                        result = extract_layer(
                            task.install_target, task.archive, task.staging, reporter, task.hooks
                        )
                except BaseException as exc:
                    task.future.set_exception(exc)
                    if stopping.is_set() or not isinstance(exc, Exception):
                        break
                else:
                    task.future.set_result(result)
        finally:
            if worker is not None:
                stop_worker(worker, timeout=5)

    # Without workers one lane: threads would only contend for the GIL, slowing the
    # first archive (the runtime, whose postinstall every other layer waits for).
    lanes = [
        threading.Thread(target=lane, args=(i,), name=f"deploy-extract-{i}", daemon=True)
        for i in range(max(1, jobs) if use_workers else 1)
    ]
    for thread in lanes:
        thread.start()

    def submit(
        install_target: str, archive: Path, staging: Path, hooks: Unpacking | None = None
    ) -> Future[ExtractedLayer]:
        future: Future[ExtractedLayer] = Future()
        tasks.put(_Task(install_target, archive, staging, future, hooks))
        return future

    ok = False
    try:
        yield submit
        ok = True
    finally:
        if not ok:
            stopping.set()
            _drain(tasks)
            with workers_lock:
                for worker in workers:
                    with contextlib.suppress(OSError):
                        worker.kill()
        for _ in lanes:
            tasks.put(None)
        for thread in lanes:
            thread.join()


def _drain(tasks: queue.Queue[_Task | None]) -> None:
    with contextlib.suppress(queue.Empty):
        while True:
            task = tasks.get_nowait()
            if task is not None:
                task.future.cancel()


# -- the worker side ---------------------------------------------------------------------


def _ready_worker() -> subprocess.Popen[str] | None:
    """A started worker that has imported what it needs, or None if none could start.

    Its lane takes no archive before then, so the first (the runtime) goes to the lane
    that extracts in this process at once.
    """
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            # no cwd on its sys.path; who to die with
            env={**os.environ, "PYTHONSAFEPATH": "1", _PARENT_ENV: str(os.getpid())},
        )
    except OSError:
        return None  # extracting in this process is slower, not wrong
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(json.dumps([p for p in sys.path if p]) + "\n")
        proc.stdin.flush()
        if json.loads(proc.stdout.readline() or "{}").get("ready"):
            return proc
    except (OSError, ValueError):
        pass
    stop_worker(proc, timeout=5)
    return None


def _in_worker(worker: subprocess.Popen[str], task: _Task, reporter: Reporter) -> ExtractedLayer:
    assert worker.stdin is not None and worker.stdout is not None
    request = {
        "install_target": task.install_target,
        "archive": os.fspath(task.archive),
        "staging": os.fspath(task.staging),
    }
    key = f"deploy:{task.install_target}"
    try:
        worker.stdin.write(json.dumps(request) + "\n")
        worker.stdin.flush()
    except OSError:
        raise DeployError(f"the extraction worker for {task.archive.name} died") from None
    reporter.begin(key, _label(task.install_target), total=task.archive.stat().st_size)
    status = "failed"
    try:
        while line := worker.stdout.readline():
            reply = json.loads(line)
            if "advance" in reply:
                reporter.advance(key, int(reply["advance"]))
                continue
            if "error" in reply:
                kind = ArchiveError if reply.get("kind") == "ArchiveError" else DeployError
                raise kind(str(reply["error"]))
            manifest = tuple(ManifestEntry.from_dict(entry) for entry in reply["manifest"])
            status = "done"
            return ExtractedLayer(Path(reply["path"]), str(reply["root_name"]), manifest)
        raise DeployError(f"the extraction worker for {task.archive.name} died")
    finally:
        reporter.end(key, status)


class _LineReporter(Reporter):
    """Progress from a worker: one JSON line per megabyte extracted."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._pending = 0

    def advance(self, key: str, amount: int) -> None:
        self._pending += amount
        if self._pending >= _PROGRESS_STEP:
            self._out.write(json.dumps({"advance": self._pending}) + "\n")
            self._out.flush()
            self._pending = 0


def worker_main() -> None:
    """A worker's loop: one JSON request per line on stdin, one reply line on stdout."""
    _die_with_parent()
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        request: dict[str, Any] = json.loads(line)
        try:
            result = extract_layer(
                request["install_target"],
                Path(request["archive"]),
                Path(request["staging"]),
                _LineReporter(out),
            )
            reply: dict[str, Any] = {
                "path": os.fspath(result.path),
                "root_name": result.root_name,
                "manifest": [entry.to_dict() for entry in result.manifest],
            }
        except VenvLayersError as exc:
            reply = {"error": str(exc), "kind": type(exc).__name__}
        except Exception as exc:  # a bug: report it rather than leave the deploy waiting
            reply = {"error": f"extraction failed: {exc!r}", "kind": "DeployError"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


def _die_with_parent() -> None:
    """Let the kernel kill this worker when the deploy that started it dies.

    Ctrl-C is the deploy's to handle: it kills its workers itself.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not sys.platform.startswith("linux"):
        return  # elsewhere a worker ends at its next read, when stdin closes
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != int(os.environ.get(_PARENT_ENV, os.getppid())):
        os._exit(1)  # the deploy died before the line above took effect
