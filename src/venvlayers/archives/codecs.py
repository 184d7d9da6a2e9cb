"""Deterministic parallel compression and bounded streaming decompression.

Output must not depend on the number of threads, so parallelism never decides where
the stream is cut:

* zstd: libzstd's own workers (one frame). Its jobs are cut at fixed offsets, so any
  worker count >= 1 gives the same bytes (checked by the tests); single-threaded
  mode (0 workers) would differ and is never used.
* xz: the stream is cut into fixed-size chunks compressed in a thread pool, each an
  independent .xz stream; concatenated streams are valid .xz (`xz -d`, `tarfile`).
* deflate (gzip, zip members): fixed-size chunks too, each primed with the previous
  chunk's last 32 KiB and ended with a sync flush, so the pieces join into a single
  deflate stream (the technique of pigz) and gzip output is one standard member.

zlib, lzma and zstandard release the GIL while compressing, so threads scale.
"""

from __future__ import annotations

import collections
import lzma
import queue
import struct
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import BinaryIO, Protocol

import zstandard

from .common import ArchiveFormat

__all__ = [
    "READ_BLOCK",
    "ChunkCodec",
    "ChunkedCompressor",
    "DeflatePieces",
    "ForwardReader",
    "OrderedOutput",
    "PrefetchReader",
    "XzChunks",
    "ZstdStream",
    "chunk_codec",
    "decompressing_reader",
    "sniff_format",
]

_DEFLATE_WINDOW = 32 * 1024
_GZIP_HEADER = bytes((0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 255))  # no name, mtime 0, OS unknown


class ChunkCodec(Protocol):
    """Compresses one chunk of a stream without looking at any other chunk's output."""

    needs_crc: bool
    """Whether `trailer` needs the CRC-32 of the whole uncompressed stream."""

    def header(self) -> bytes: ...

    def compress(self, data: bytes, history: bytes, final: bool) -> bytes:
        """`history` is up to 32 KiB of uncompressed data preceding `data`."""

    def trailer(self, crc: int, size: int) -> bytes: ...


class XzChunks:
    needs_crc = False

    def __init__(self, preset: int) -> None:
        self.preset = preset

    def header(self) -> bytes:
        return b""

    def compress(self, data: bytes, history: bytes, final: bool) -> bytes:
        if not data and final:
            return b""
        return lzma.compress(
            data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=self.preset
        )

    def trailer(self, crc: int, size: int) -> bytes:
        return b""


class DeflatePieces:
    """Raw deflate pieces that concatenate into one stream; `gzip=True` wraps it."""

    def __init__(self, level: int, *, gzip: bool) -> None:
        self.level = level
        self.gzip = gzip
        self.needs_crc = gzip

    def header(self) -> bytes:
        return _GZIP_HEADER if self.gzip else b""

    def compress(self, data: bytes, history: bytes, final: bool) -> bytes:
        if history:
            comp = zlib.compressobj(self.level, zlib.DEFLATED, -15, 9, zdict=history)
        else:
            comp = zlib.compressobj(self.level, zlib.DEFLATED, -15, 9)
        return comp.compress(data) + comp.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)

    def trailer(self, crc: int, size: int) -> bytes:
        return struct.pack("<II", crc, size & 0xFFFFFFFF) if self.gzip else b""


def chunk_codec(fmt: ArchiveFormat, level: int) -> ChunkCodec:
    if fmt is ArchiveFormat.TAR_XZ:
        return XzChunks(level)
    return DeflatePieces(level, gzip=fmt is ArchiveFormat.TAR_GZ)


_Observer = Callable[[bytes], object]


class OrderedOutput:
    """Writes bytes and compression results to `sink` in the order they were queued.

    Results are awaited only when too many are pending, so compression runs ahead of
    writing by a bounded amount.
    """

    def __init__(self, sink: Callable[[bytes], object], *, max_pending: int) -> None:
        self._sink = sink
        self._max_pending = max_pending
        self._items: collections.deque[
            bytes | Callable[[], bytes] | tuple[Future[bytes], _Observer | None]
        ] = collections.deque()
        self._futures = 0
        self.offset = 0
        """Bytes handed to `sink` so far."""

    def put(self, item: bytes | Callable[[], bytes]) -> None:
        """Queue literal bytes, or a callable that makes them when their turn comes."""
        self._items.append(item)

    def put_result(self, future: Future[bytes], observe: _Observer | None = None) -> None:
        """Queue a pending result; `observe` sees it just before it is written."""
        self._items.append((future, observe))
        self._futures += 1
        while self._futures > self._max_pending:
            self._write_next()

    def flush(self) -> None:
        while self._items:
            self._write_next()

    def abort(self) -> None:
        """Drop queued work after a failure; chunks already running finish unobserved."""
        for item in self._items:
            if isinstance(item, tuple):
                item[0].cancel()
        self._items.clear()
        self._futures = 0

    def _write_next(self) -> None:
        item = self._items.popleft()
        if isinstance(item, tuple):
            self._futures -= 1
            future, observe = item
            data = future.result()
            if observe is not None:
                observe(data)
        elif isinstance(item, bytes):
            data = item
        else:
            data = item()
        if data:
            self._sink(data)
            self.offset += len(data)


class ChunkedCompressor:
    """Compresses a stream chunk by chunk in `pool`; output goes to `out` in order."""

    def __init__(
        self, codec: ChunkCodec, out: OrderedOutput, *, pool: Executor, chunk_size: int
    ) -> None:
        self._codec = codec
        self._out = out
        self._pool = pool
        self._chunk_size = chunk_size
        self._buffer = bytearray()
        self._history = b""
        self._crc = 0
        self._size = 0  # for gzip's trailer
        out.put(codec.header())

    def write(self, data: bytes | memoryview) -> None:
        if self._codec.needs_crc:
            self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        self._buffer += data
        while len(self._buffer) >= self._chunk_size:
            with memoryview(self._buffer) as view:
                chunk = bytes(view[: self._chunk_size])
            del self._buffer[: self._chunk_size]
            self._submit(chunk, final=False)

    def close(self) -> None:
        """Queue the last chunk and the codec's trailer; the caller flushes `out`."""
        self._submit(bytes(self._buffer), final=True)
        self._buffer = bytearray()
        self._out.put(self._codec.trailer(self._crc, self._size))

    def _submit(self, chunk: bytes, *, final: bool) -> None:
        history = self._history
        tail = chunk if len(chunk) >= _DEFLATE_WINDOW else history + chunk
        self._history = tail[-_DEFLATE_WINDOW:]
        self._out.put_result(self._pool.submit(self._codec.compress, chunk, history, final))


class ZstdStream:
    """A zstd stream compressed by libzstd's workers; same interface as `ChunkedCompressor`."""

    def __init__(self, level: int, out: OrderedOutput, *, threads: int) -> None:
        cctx = zstandard.ZstdCompressor(level=level, threads=max(1, threads), write_checksum=True)
        self._cobj = cctx.compressobj()
        self._out = out

    def write(self, data: bytes | memoryview) -> None:
        compressed: bytes = self._cobj.compress(data)
        if compressed:
            self._out.put(compressed)

    def close(self) -> None:
        self._out.put(self._cobj.flush())


# -- reading ---------------------------------------------------------------------------

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
READ_BLOCK = 1 << 20


def sniff_format(head: bytes) -> ArchiveFormat | None:
    """The format given by an archive's first bytes (`None` for unknown or plain tar)."""
    if head.startswith(_ZSTD_MAGIC):
        return ArchiveFormat.TAR_ZST
    if head.startswith(_XZ_MAGIC):
        return ArchiveFormat.TAR_XZ
    if head.startswith(_GZIP_MAGIC):
        return ArchiveFormat.TAR_GZ
    if head.startswith(_ZIP_MAGICS):
        return ArchiveFormat.ZIP
    return None


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def decompressing_reader(raw: BinaryIO, fmt: ArchiveFormat | None) -> _Readable:
    """A reader of the uncompressed tar stream in `raw` (`fmt=None`: plain tar).

    Every reader here accepts concatenated frames/streams/members.
    """
    if fmt is ArchiveFormat.TAR_ZST:
        dctx = zstandard.ZstdDecompressor()
        reader: _Readable = dctx.stream_reader(
            raw, read_size=READ_BLOCK, read_across_frames=True, closefd=False
        )
        return reader
    if fmt is ArchiveFormat.TAR_XZ:
        return lzma.LZMAFile(raw, "rb")
    if fmt is ArchiveFormat.TAR_GZ:
        import gzip

        return gzip.GzipFile(fileobj=raw, mode="rb")
    return raw


class PrefetchReader:
    """Reads `source` in a background thread so decompression overlaps file writing.

    Holds at most `depth` blocks. `read()` re-raises, in the caller's thread, whatever
    the background read raised. `close()` must be called to stop the thread early.
    """

    def __init__(self, source: _Readable, *, depth: int = 8, block: int = READ_BLOCK) -> None:
        self._source = source
        self._block = block
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._current = memoryview(b"")
        self._done = False
        self._thread = threading.Thread(target=self._run, name="archive-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._source.read(self._block)
                self._put(data)
                if not data:
                    return
        except BaseException as exc:  # handed to the reading thread
            self._put(exc)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            size = 1 << 62
        pieces: list[bytes] = []
        wanted = size
        while wanted > 0:
            if not self._current:
                if self._done:
                    break
                item = self._queue.get()
                if isinstance(item, BaseException):
                    self._done = True
                    raise item
                if not item:
                    self._done = True
                    break
                self._current = memoryview(item)
            piece = self._current[:wanted]
            self._current = self._current[len(piece) :]
            pieces.append(piece.tobytes())
            wanted -= len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class ForwardReader:
    """A forward-only seekable view of a stream, with a small look-behind window.

    `tarfile` wants `seek`/`tell`; it only ever moves forward, except to look at the
    block it has just read, which the look-behind window keeps.
    """

    _LOOK_BEHIND = 4096

    def __init__(self, source: _Readable) -> None:
        self._source = source
        self._buffer = b""
        self._buffer_start = 0  # stream offset of _buffer[0]
        self._pos = 0
        self._eof = False

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self._pos
        elif whence != 0:
            raise OSError("cannot seek relative to the end of a stream")
        if pos < self._buffer_start:
            raise OSError(f"cannot seek back to {pos} in a stream (at {self._pos})")
        self._pos = pos
        return pos

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            size = 1 << 62
        pieces: list[bytes] = []
        while size > 0:
            offset = self._pos - self._buffer_start
            if offset < len(self._buffer):
                piece = self._buffer[offset : offset + size]
                pieces.append(piece)
                self._pos += len(piece)
                size -= len(piece)
                continue
            if not self._fill():
                break
        return b"".join(pieces) if len(pieces) != 1 else pieces[0]

    def _fill(self) -> bool:
        """Read more from the source, keeping a look-behind; False at the end."""
        while not self._eof:
            data = self._source.read(READ_BLOCK)
            if not data:
                self._eof = True
                break
            keep = self._buffer[-self._LOOK_BEHIND :]
            self._buffer_start += len(self._buffer) - len(keep)
            self._buffer = keep + data
            if self._pos < self._buffer_start + len(self._buffer):
                return True
        return False
