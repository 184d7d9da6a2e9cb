"""The one HTTP server class of the test servers (file servers, fake registries, tokens)."""

from __future__ import annotations

import http.server
import sys
from typing import Any

__all__ = ["LoopbackServer"]


class LoopbackServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server that keeps quiet when a client hangs up mid-reply.

    Several tests cut connections on purpose (a killed deploy, a refused download after
    its first bytes); the standard server prints a traceback for each, which reads like a
    failure in the test output. Any other handler error is still printed.
    """

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)
