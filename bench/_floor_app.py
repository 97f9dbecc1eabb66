"""Benchmark only, never part of the product: the least an audited, decrypted read can do.

An HTTP read that releases plaintext only once its audit record is durable has to:
check the caller's credential, fetch the sealed row (one statement), decrypt it,
write a MACed record of the read and commit it durably (one statement), and
answer. This app does exactly that and nothing else: no principal, no policy
decision, no hash chain or sequencing, no middleware, no framework routing (a
bare ASGI callable), and on PostgreSQL no thread hop (asyncio psycopg). Served
the same way as the other two sides, its throughput against the bare FastAPI
route is the ratio that no implementation of the vault's guarantees on this
machine and this stack can pass, whatever else it does or leaves out.

Configured by environment (``from_env``, a uvicorn factory):
``BENCH_FLOOR_DB`` (a postgresql:// URL or an SQLite path), ``BENCH_FLOOR_KEYS``
(hex: the 32-byte AES-GCM key, then the 32-byte MAC key; synthetic data only)
and ``BENCH_FLOOR_TOKEN`` (the bearer token that the load generator sends).
"""

from __future__ import annotations

import asyncio
import hmac
import os
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from anyio import to_thread
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "/customers/"
ARCHIVE_TABLE, AUDIT_TABLE = "bench_floor_archive", "bench_floor_audit"
SCHEMA = (
    f"CREATE TABLE {ARCHIVE_TABLE} (no text PRIMARY KEY, nonce bytea NOT NULL, "
    "sealed bytea NOT NULL)",
    f"CREATE TABLE {AUDIT_TABLE} (id {{serial}} PRIMARY KEY, time bigint NOT NULL, "
    "actor text NOT NULL, action smallint NOT NULL, archives text NOT NULL, client text, "
    "mac bytea NOT NULL)",
)
_SELECT = f"SELECT nonce, sealed FROM {ARCHIVE_TABLE} WHERE no = {{p}}"
_INSERT = (
    f"INSERT INTO {AUDIT_TABLE} (time, actor, action, archives, client, mac) "
    "VALUES ({p}, {p}, 1, {p}, {p}, {p})"
)
ACTOR = "zhang.wei"
Send = Callable[[dict[str, Any]], Awaitable[None]]


def seal(key: bytes, no: str, body: bytes) -> tuple[bytes, bytes]:
    """The stored form of one archive's body, bound to its number."""
    nonce = os.urandom(12)
    return nonce, AESGCM(key).encrypt(nonce, body, no.encode())


def record_mac(mac_key: bytes, micros: int, no: str, client: str) -> bytes:
    return hmac.digest(mac_key, f"{micros}|{ACTOR}|read|{no}|{client}".encode(), "sha256")


class FloorRead:
    """The ASGI app: ``GET /customers/{no}`` with ``Authorization: Bearer <token>``."""

    def __init__(self, db: str, keys: bytes, token: str) -> None:
        if len(keys) != 64:
            raise ValueError("BENCH_FLOOR_KEYS must be 64 bytes in hex")
        self.aes, self.mac_key = AESGCM(keys[:32]), keys[32:]
        self.expected = f"Bearer {token}".encode()
        self.postgres = db.startswith("postgresql")
        self.db = db
        self._pool: asyncio.Queue[Any] | None = None
        self._local = threading.local()
        self._write = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        auth = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        if scope["method"] != "GET" or not path.startswith(PREFIX):
            await _answer(send, 404, b"")
            return
        if not hmac.compare_digest(auth, self.expected):
            await _answer(send, 401, b"")
            return
        no = path[len(PREFIX) :]
        client = (scope.get("client") or ("", 0))[0]
        if self.postgres:
            body = await self._read_pg(no, client)
        else:
            body = await to_thread.run_sync(self._read_sqlite, no, client)
        await _answer(send, 200, body) if body is not None else await _answer(send, 404, b"")

    def _open(self, sealed: tuple[bytes, bytes] | None, no: str) -> bytes | None:
        return None if sealed is None else self.aes.decrypt(sealed[0], sealed[1], no.encode())

    async def _read_pg(self, no: str, client: str) -> bytes | None:
        import psycopg

        if self._pool is None:
            self._pool = asyncio.Queue()
            for _ in range(8):
                self._pool.put_nowait(
                    await psycopg.AsyncConnection.connect(self.db, autocommit=True)
                )
        conn = await self._pool.get()
        try:
            cur = await conn.execute(_SELECT.format(p="%s"), (no,), prepare=True)
            body = self._open(await cur.fetchone(), no)
            if body is None:
                return None
            micros = time.time_ns() // 1000
            mac = record_mac(self.mac_key, micros, no, client)
            # Autocommit: the record is durable when the statement returns.
            await conn.execute(
                _INSERT.format(p="%s"), (micros, ACTOR, no, client, mac), prepare=True
            )
            return body
        finally:
            self._pool.put_nowait(conn)

    def _read_sqlite(self, no: str, client: str) -> bytes | None:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect_sqlite(self.db)
        body = self._open(conn.execute(_SELECT.format(p="?"), (no,)).fetchone(), no)
        if body is None:
            return None
        micros = time.time_ns() // 1000
        mac = record_mac(self.mac_key, micros, no, client)
        with self._write:  # one writer at a time, as SQLite allows
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(_INSERT.format(p="?"), (micros, ACTOR, no, client, mac))
            conn.execute("COMMIT")  # synchronous=FULL: durable when COMMIT returns
        return body


def connect_sqlite(path: str) -> sqlite3.Connection:
    """The vault's own durability settings: WAL, and an fsync at every commit."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=30000"):
        conn.execute(f"PRAGMA {pragma}")
    return conn


async def _answer(send: Send, status: int, body: bytes) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def from_env() -> FloorRead:
    return FloorRead(
        os.environ["BENCH_FLOOR_DB"],
        bytes.fromhex(os.environ["BENCH_FLOOR_KEYS"]),
        os.environ["BENCH_FLOOR_TOKEN"],
    )
