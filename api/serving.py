"""uvicorn's h11 protocol with TCP_NODELAY on every connection, for ``serve --workers N``.

With more than one worker, uvicorn binds the listening socket itself
(``socket.socket(family)``, whose ``proto`` is 0), and asyncio only sets
TCP_NODELAY on accepted sockets whose ``proto`` is IPPROTO_TCP. Responses go
out as two writes (head, then body), so with Nagle's algorithm on, every
keep-alive response waited for the client's delayed ACK: 44 ms per request
with two workers against under 1 ms with one (measured with bench/api.py).
"""

from __future__ import annotations

import asyncio
import socket
from contextlib import suppress

from uvicorn.protocols.http.h11_impl import H11Protocol

HTTP_PROTOCOL = "api.serving:NoDelayH11"  # for uvicorn.run(http=...)
# uvicorn's master kills a worker that has not answered its health ping within this many
# seconds (5 by default). A worker still importing the vault on a busy two-core machine
# took longer than that, so it was killed and respawned every few seconds and the
# service ran on fewer workers than asked for. A hung worker is still replaced.
WORKER_HEALTHCHECK_SECONDS = 60


class NoDelayH11(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
