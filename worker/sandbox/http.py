"""The HTTP server both sandboxes run on (stdlib ``ThreadingHTTPServer``)."""

from __future__ import annotations

import logging
import sys
from http.server import ThreadingHTTPServer
from typing import Any

log = logging.getLogger("worker.sandbox")


class SandboxHTTPServer(ThreadingHTTPServer):
    """One thread per connection; a client that went away is normal, not a traceback.

    Clients of a sandbox time out, get SIGKILLed by the chaos run, or drop the connection
    on purpose; only a failure of the sandbox itself is logged with its traceback.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError, TimeoutError)):
            log.debug("client %s went away: %r", client_address, exc)
            return
        log.exception("sandbox request from %s failed", client_address)
