"""The test HTTP servers' one server class, and a static file server built on it."""

from __future__ import annotations

import contextlib
import functools
import http.server
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["LoopbackServer", "files_handler", "serving"]


class LoopbackServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server that keeps quiet when a client hangs up mid-reply.

    Several tests cut connections on purpose (a killed deploy, a refused download after
    its first bytes); the standard server prints a traceback for each, which reads like a
    failure in the test output. Any other handler error is still printed.
    """

    daemon_threads = True

    def __init__(self, handler: Callable[..., Any], host: str = "127.0.0.1") -> None:
        """Bound to a free port of `host`; `start()` serves it."""
        super().__init__((host, 0), handler)
        self.url = f"http://{host}:{self.server_address[1]}"
        self.port = self.server_address[1]

    def start(self) -> LoopbackServer:
        """Serve on a daemon thread until `stop()`."""
        threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


@contextlib.contextmanager
def serving(handler: Callable[..., Any], host: str = "127.0.0.1") -> Iterator[str]:
    """Serve with `handler` on a free port of `host` while the block runs: its base URL."""
    server = LoopbackServer(handler, host).start()
    try:
        yield server.url
    finally:
        server.stop()


class _Files(http.server.SimpleHTTPRequestHandler):
    requested: list[str] | None = None

    def do_GET(self) -> None:
        if self.requested is not None:
            self.requested.append(self.path)
        super().do_GET()

    def log_message(self, *_args: Any) -> None:
        pass


def files_handler(root: Path, requested: list[str] | None = None) -> Callable[..., Any]:
    """A quiet static file server for `root`, like a bucket; GET paths go to `requested`."""
    handler = type("Files", (_Files,), {"requested": requested})
    return functools.partial(handler, directory=str(root))
