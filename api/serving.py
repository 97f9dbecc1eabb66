"""How ``serve --workers N`` runs: TCP_NODELAY on every connection, workers tied to their master.

With more than one worker, uvicorn binds the listening socket itself
(``socket.socket(family)``, whose ``proto`` is 0), and asyncio only sets
TCP_NODELAY on accepted sockets whose ``proto`` is IPPROTO_TCP. Responses go
out as two writes (head, then body), so with Nagle's algorithm on, every
keep-alive response waited for the client's delayed ACK: 44 ms per request
with two workers against under 1 ms with one (measured with bench/api.py).

A worker also exits when its master dies. uvicorn's master stops its workers
when it is asked to, but one killed with SIGKILL (or by the kernel's OOM killer)
left them serving on, orphaned: still answering, but no longer replaced when
they hang and never stopped by the service manager's next stop.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import socket
import threading
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


PARENT_POLL_SECONDS = 1.0


def exit_with_master(poll: float = PARENT_POLL_SECONDS) -> bool:
    """In a worker process of uvicorn's master: stop gracefully once the master is gone.

    A daemon thread watches the parent's pid; when the process is re-parented
    (the master died), it sends this worker SIGTERM, which uvicorn handles as a
    normal shutdown: requests in flight finish, nothing new is accepted. A
    single-process ``serve`` has no master and is not watched (its parent is
    whatever started it). Returns whether a watch was started.
    """
    if multiprocessing.parent_process() is None:
        return False
    master = os.getppid()

    def watch() -> None:
        stop = threading.Event()
        while not stop.wait(poll):
            if os.getppid() != master:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="exit-with-master", daemon=True).start()
    return True
