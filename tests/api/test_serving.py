"""``serve --workers N``: connections on uvicorn's own listening socket get TCP_NODELAY.

uvicorn binds that socket with ``socket.socket(family)`` (proto 0) when it runs
several workers; asyncio then leaves Nagle's algorithm on for accepted
connections, and every keep-alive response waits for a delayed ACK.
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from api.serving import NoDelayH11


async def _app(scope, receive, send) -> None:  # pragma: no cover - never called
    raise AssertionError


def _nodelay_of_accepted(protocol: type[H11Protocol]) -> int:
    seen: list[int] = []

    class Probe(protocol):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            sock = transport.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def main() -> None:
        config = Config(_app, log_level="warning")
        config.load()
        state = ServerState()
        listener = socket.socket(socket.AF_INET)  # as uvicorn's Config.bind_socket makes it
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Probe(config, state, {}), sock=listener)
        _r, writer = await asyncio.open_connection(*listener.getsockname())
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())
    assert seen, "no connection was accepted"
    return seen[0]


def test_plain_h11_leaves_nagle_on_for_such_a_socket() -> None:
    """The premise: without the fix, this socket's connections keep Nagle's algorithm."""
    assert _nodelay_of_accepted(H11Protocol) == 0


def test_the_served_protocol_turns_nagle_off() -> None:
    assert _nodelay_of_accepted(NoDelayH11) != 0


def test_serve_gives_slow_starting_workers_time_before_replacing_them(
    monkeypatch, tmp_path
) -> None:
    """uvicorn's 5 s default killed workers still importing on a busy machine, over and over."""
    import uvicorn

    from cli import service

    seen: dict[str, object] = {}
    monkeypatch.setattr(service, "open_vault", lambda settings: None)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: seen.update(kw))
    service.serve(host="127.0.0.1", port=8765, workers=1, data_dir=tmp_path)
    assert seen["timeout_worker_healthcheck"] == 60 and seen["http"] == service.HTTP_PROTOCOL
