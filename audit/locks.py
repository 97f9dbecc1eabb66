"""The chain's locks and head: one writer at a time gives entries their place.

* PostgreSQL: ``pg_advisory_xact_lock`` (keyed by the current schema) is taken
  before the head is read and held until the caller's transaction ends, so the
  next writer reads a committed head. ``seq`` is the primary key, so if the
  lock were ever bypassed a fork would fail on the key instead of committing.
* SQLite: if the connection has not written yet, ``BEGIN IMMEDIATE`` takes the
  write lock *before* the head is read. A deferred transaction that read first
  and wrote later would fail on the lock upgrade under contention; waiting at
  ``BEGIN`` (busy_timeout) never fails that way.

Appends take ``APPEND_LOCK``; signers take ``CHECKPOINT_LOCK``, so two
processes never sign the same growth twice while appends go on.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from audit.errors import AuditIntegrityError
from audit.guards import PG_HEAD_FUNCTION
from audit.models import entry_table
from audit.stored import as_bytes
from foundation.rawsql import Raw, RawTx, dbapi_of, dialect_of, raw_sql

# Anything a lock or an append can run on: the hot path's raw transaction, a
# Connection, or an ORM Session (each inside its own open transaction).
Handle = RawTx | Connection | Session

# pg_advisory_xact_lock(int, int): first key names the lock, second the schema.
APPEND_LOCK = 0x41554454  # "AUDT"
CHECKPOINT_LOCK = 0x41554443  # "AUDC"

HEAD = (
    sa.select(entry_table.c.seq, entry_table.c.entry_hash)
    .order_by(entry_table.c.seq.desc())
    .limit(1)
)
_PG_XACT_LOCK = Raw(sa.text("SELECT pg_advisory_xact_lock(:k, hashtext(current_schema()))"))
# How long a writer waits for a lock before its statement fails (PostgreSQL). A holder
# keeps the append lock for one sequencing batch (a second or two under load) and the
# checkpoint lock for one signing, so an honest wait is short; a transaction that sits
# on the lock (anyone with the application's role can take an advisory lock) turns
# every reader and signer into an error, a 503, instead of a thread waiting forever.
LOCK_TIMEOUT_S: float = 30.0
_PG_LOCK_TIMEOUT = Raw(sa.text("SELECT set_config('lock_timeout', :t, true)"))
_PG_TRY_XACT_LOCK = Raw(sa.text("SELECT pg_try_advisory_xact_lock(:k, hashtext(current_schema()))"))
_PG_LOCK_HEAD = Raw(
    sa.text(f"SELECT head_seq, head_hash FROM {PG_HEAD_FUNCTION}(:k)")  # noqa: S608 - constant
)
_HEAD_RAW = Raw(HEAD)


def take_lock(handle: Handle, key: int) -> None:
    """Serialise writers of the chain (see the module docstring for why each form)."""
    name = dialect_of(handle).name
    if name == "postgresql":
        _bounded_wait(handle)
        _PG_XACT_LOCK.first(handle, {"k": key})
    elif name == "sqlite" and not dbapi_of(handle)[0].in_transaction:
        raw_sql(handle, "BEGIN IMMEDIATE")


def _bounded_wait(handle: Handle) -> None:
    """``LOCK_TIMEOUT_S`` for the rest of the caller's transaction."""
    _PG_LOCK_TIMEOUT.first(handle, {"t": f"{int(LOCK_TIMEOUT_S * 1000)}ms"})


def try_lock(handle: Handle, key: int) -> bool:
    """``take_lock`` if nobody holds it; False at once otherwise (PostgreSQL).

    For work another holder of the lock is doing anyway (sequencing, signing):
    a caller that would only repeat it goes on instead of waiting. SQLite has one
    writer at a time and waits for it as ``take_lock`` does.
    """
    if dialect_of(handle).name == "postgresql":
        return bool(_PG_TRY_XACT_LOCK.scalar(handle, {"k": key}))
    take_lock(handle, key)
    return True


def lock_and_read_head(handle: Handle) -> tuple[int, bytes] | None:
    """Take the append lock and read the head: ``(seq, entry_hash)``, None for an empty log.

    Raw DBAPI statements: this runs on every audited read.
    """
    if dialect_of(handle).name != "postgresql":
        take_lock(handle, APPEND_LOCK)
        return read_head(handle)
    _bounded_wait(handle)
    row = _PG_LOCK_HEAD.first(handle, {"k": APPEND_LOCK})  # lock and head in one
    return _head(row)


def read_head(handle: Handle) -> tuple[int, bytes] | None:
    """The head as ``lock_and_read_head`` returns it, for a caller already holding the lock."""
    return _head(_HEAD_RAW.first(handle))


def _head(row: Any) -> tuple[int, bytes] | None:
    """``(seq, entry_hash)`` of the newest entry; refused when its hash is no 32-byte string.

    Whatever an edited row holds goes nowhere near ``bytes()`` (an integer there
    would be taken as a length) and nothing is chained after a head that is not a hash.
    """
    if row is None:
        return None
    head = as_bytes(row[1])
    if len(head) != 32:
        raise AuditIntegrityError(f"the newest audit entry ({row[0]}) holds no valid hash")
    return int(row[0]), head


def locked_head(handle: Handle) -> int:
    """Take the append lock in the caller's transaction and return the head seq.

    Held until that transaction ends; the key file gains its audit MAC key
    under it, so no append can fall between the head read and the new key.
    """
    head = lock_and_read_head(handle)
    return 0 if head is None else head[0]


def head_of(conn: Connection) -> int:
    """The newest seq, read without a lock (0 for an empty log)."""
    row = conn.execute(HEAD).first()
    return 0 if row is None else int(row[0])
