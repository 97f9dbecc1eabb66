"""The FastAPI application: built from a vault, with problem+json errors everywhere."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors, web
from api.fastpath import FastRead
from api.internal_errors import InternalErrors, log_server_error
from api.observe import ObserveRequests
from api.readiness import Readiness
from api.routers import (
    access_report,
    audit,
    auth,
    customers,
    detection,
    exports,
    handovers,
    health,
    inspections,
    leak_duties,
    leak_evidence,
    leak_traces,
    leaks,
    notifications,
    observability,
    password_reset,
    requests,
    users,
)
from api.services import Services
from api.serving import exit_with_master
from audit.errors import AuditError
from foundation.clock import utcnow
from foundation.db import checkpoint_sqlite
from foundation.settings import Settings
from policies.mail_delivery import deliver_due
from vault.uploads import purge_abandoned
from vault.vault import Vault, open_vault

ABANDONED = timedelta(hours=24)  # an upload this old and still incomplete is dead
SHUTDOWN_WAIT = 10.0  # seconds housekeeping may take to finish its step at shutdown


class BodyLimit:
    """Refuse bodies over the limit with 413 before they are parsed (uploads get more)."""

    def __init__(self, app: ASGIApp, *, limit: int, upload_limit: int) -> None:
        self.app, self.limit, self.upload_limit = app, limit, upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope["path"].endswith("/attachments")
        limit = self.upload_limit + 64 * 1024 if upload else self.limit
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._refuse(send, limit)
            return
        seen = 0
        too_big = False

        async def counted() -> Message:
            nonlocal seen, too_big
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    too_big = True
                    raise _TooLarge
            return message

        if upload and scope.get("method") == "POST":
            # The upload route reads its body itself, after authentication, and
            # refuses it with 413 as soon as the limit is passed (nothing stored).
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(send, limit)

    @staticmethod
    async def _refuse(send: Send, limit: int) -> None:
        body = errors.problem(
            413, "payload-too-large", f"the request body is larger than {limit} bytes"
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body.body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body.body})


class _TooLarge(Exception):
    pass


class SecurityHeaders:
    """Responses may carry customer content: never cached, never sniffed, never framed."""

    HEADERS = (
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.HEADERS if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``, or less when the service stops; True once it has stopped."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return stop.is_set()
    return True


async def _checkpoints(services: Services, stop: asyncio.Event) -> None:
    """Housekeeping every minute, even when no request comes in.

    Signs a checkpoint when T seconds have passed, and sweeps: expired requests
    and grants are marked (and their requesters notified), overdue loans flagged,
    and leak detection's rules run over the audit entries appended since.
    Decisions never wait for this; they check every grant's window themselves.
    """
    every = min(60.0, services.vault.settings.audit_checkpoint_every_seconds)
    log = logging.getLogger("archive_vault.api")
    while not await _stopped(stop, every):
        try:
            await run_in_threadpool(services.audit.checkpoint_if_due)
        except AuditError as exc:  # content-free by contract; says which entry
            log.error("periodic checkpoint refused: %s", exc)
        except Exception as exc:  # noqa: BLE001 - logged as one line; retried next tick
            log_server_error(exc, "periodic checkpoint")
        try:
            await run_in_threadpool(services.sweep)
        except Exception as exc:  # noqa: BLE001 - logged as one line; retried next tick
            log_server_error(exc, "periodic sweep")
        try:  # leak detection over what the audit log gained (policies.detection)
            await run_in_threadpool(services.detect)
        except Exception as exc:  # noqa: BLE001 - logged as one line; retried next tick
            log_server_error(exc, "detection sweep")
        # Mail of committed notifications (the sweep's too); never raises, retries itself.
        await run_in_threadpool(
            deliver_due, services.engine, services.vault.settings, services.clock()
        )
        try:  # uploads a dead worker left half-written (ciphertext, never listed)
            await run_in_threadpool(
                functools.partial(
                    purge_abandoned, services.store, now=services.clock(), older_than=ABANDONED
                )
            )
        except Exception as exc:  # noqa: BLE001 - logged as one line; retried next tick
            log_server_error(exc, "purging abandoned uploads")


async def _signer(services: Services, stop: asyncio.Event) -> None:
    """Sign a checkpoint at most ``audit_checkpoint_delay_seconds`` after any append.

    Until a checkpoint covers them, the newest entries could be cut off by
    someone with write access to the database without a trace; signing about a
    second after each commit shrinks that window to about a second. The check
    between signatures is an in-memory flag set by this worker's commits (every
    worker signs its own appends), so an idle service does no work. The log
    refuses to sign over an entry whose MAC fails: that is logged, once per
    attempt, and retried by the minute's sweep, not every tick.
    """
    delay = services.vault.settings.audit_checkpoint_delay_seconds
    tick = delay / 2  # an append just after a tick is signed within the delay
    log = logging.getLogger("archive_vault.api")
    while not await _stopped(stop, tick):
        try:
            await run_in_threadpool(services.audit.sign_pending)
        except AuditError as exc:  # content-free by contract; says which entry
            log.error("audit checkpoint refused: %s", exc)
        except Exception as exc:  # noqa: BLE001 - logged as one line; retried next tick
            log_server_error(exc, "audit checkpoint")


def create_app(
    settings: Settings | None = None,
    *,
    vault: Vault | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> FastAPI:
    """The service. Tests pass a vault and a clock; ``serve`` passes settings."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not hasattr(app.state, "services"):
            app.state.services = Services.build(
                vault or open_vault(settings or Settings()), clock=clock
            )
        services = app.state.services
        # A destruction commits, then folds SQLite's WAL into the file so its erased key and
        # ciphertext leave the bytes; a process killed in between left them there. Fold at
        # every start, before serving (a no-op on PostgreSQL, and quick when nothing waits).
        await run_in_threadpool(checkpoint_sqlite, services.vault.engine)
        stop = asyncio.Event()
        ticker = asyncio.create_task(_checkpoints(services, stop))
        signer = asyncio.create_task(_signer(services, stop))
        try:
            yield
        finally:
            # Let housekeeping finish the step it is in: cancelling the await would
            # leave its worker thread writing to the database after shutdown.
            stop.set()
            _done, pending = await asyncio.wait({ticker, signer}, timeout=SHUTDOWN_WAIT)
            for task in pending:
                task.cancel()
            # A clean shutdown signs what this worker appended (a quiet tail is covered).
            try:
                await run_in_threadpool(services.audit.checkpoint_if_new)
            except AuditError as exc:
                logging.getLogger("archive_vault.api").error("audit checkpoint refused: %s", exc)

    app = FastAPI(
        title="archive-vault",
        version="0.1.0",
        description="Encrypted, policy-decided, audited customer archives.",
        lifespan=lifespan,
    )
    if vault is not None:
        app.state.services = Services.build(vault, clock=clock)
    errors.install(app)
    for module in (auth, customers, exports, requests, users, password_reset, audit, health):
        app.include_router(module.router)
    app.include_router(notifications.router)
    app.include_router(observability.router)
    app.state.readiness = Readiness()
    app.include_router(handovers.router)
    app.include_router(leaks.router)
    app.include_router(leak_traces.router)
    app.include_router(leak_duties.router)
    app.include_router(inspections.router)
    app.include_router(detection.router)
    app.include_router(leak_evidence.router)
    app.include_router(access_report.router)
    web.install(app)  # the pages: after the API's error handlers, which it wraps for pages
    limits = settings or (vault.settings if vault else Settings())
    app.add_middleware(FastRead)  # innermost: its responses get the headers below
    app.add_middleware(SecurityHeaders)
    app.add_middleware(
        BodyLimit,
        limit=limits.max_body_bytes,
        upload_limit=limits.max_attachment_bytes,
    )
    # No exception reaches the server's log.
    app.add_middleware(InternalErrors, page_path=web.is_web_path)
    # Outermost: a request id for every line logged, the access line, the metrics.
    app.add_middleware(ObserveRequests)
    return app


def app_factory() -> Any:
    """For ``uvicorn --factory api.app:app_factory`` (settings from the environment)."""
    exit_with_master()
    return create_app(Settings())
