"""Appending: one entry in the caller's open transaction; durable when that commits.

Fail-closed by construction: ``Appender.append`` writes into the caller's open
transaction and never commits. The caller commits only after it has the entry,
and releases plaintext only after the commit, so an append that raises means
the read never happened as far as anyone outside the process can tell.

Where the entry goes depends on the database (``audit.queue``):

* PostgreSQL: into the append queue, with a MAC over its columns and no lock,
  so concurrent requests never wait for each other's commit; the sequencer
  gives it its place in the chain shortly after.
* SQLite (one writer at a time anyway): straight into the chain, its head read
  under the append lock (``audit.locks``); call ``append`` late in the
  transaction, since it serialises everything after it.

``append_sequenced`` is for the few callers that must know the entry's seq in
their own transaction (evidence that cites it): it takes the append lock,
integrates the queue, and chains the entry directly, on either database.

Each archive number an entry names also gets a row in ``audit_archive_ref``
(``audit.models``), inserted with the chained entry in the same transaction:
the index that lets "every entry about this archive" skip the JSON text.

Every chained entry carries a MAC under the key file's audit MAC key
(``audit.mac``), so an entry written or rewritten by anyone without the key
file (the application's own database role included) is named by ``verify``.

The hot read path appends on a bare DBAPI transaction and reports its commit
itself (``AuditLog.committed``); an ORM session's commit is reported by the
session's own events, so the signing cadence (``audit.cadence``) hears of both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from audit.cadence import SigningCadence
from audit.codec import event_fields, format_time
from audit.errors import AuditIntegrityError, AuditWriteFailed
from audit.events import AuditEvent
from audit.locks import Handle, lock_and_read_head
from audit.log_keys import LogKeys
from audit.queue import chain_entry, enqueue, integrate_all_locked, uses_queue
from foundation.rawsql import dialect_of

_PENDING = "audit_log_pending"
_HOOKED = "audit_log_hooked"


class Appender:
    """Writes entries; with a cadence, tells it about every session commit that carried some."""

    def __init__(
        self,
        keys: LogKeys,
        clock: Callable[[], datetime],
        cadence: SigningCadence | None,
    ) -> None:
        self._keys = keys
        self._clock = clock
        self._cadence = cadence

    def append(self, session: Handle, event: AuditEvent) -> None:
        """Append one entry in the caller's open transaction. Never commits.

        Raises AuditWriteFailed for an invalid event or a database failure; the
        caller must then roll back and release nothing.
        """
        columns = event_fields(event)
        with _written():
            if uses_queue(dialect_of(session).name):
                columns["time"] = format_time(self._clock())
                enqueue(session, columns, self._keys.entry_mac())
            else:
                head = lock_and_read_head(session)
                columns["time"] = format_time(self._clock())  # stamped under the lock: monotone
                chain_entry(session, columns, head, self._keys.entry_mac())
        if isinstance(session, Session):
            self._track(session)

    def append_sequenced(self, session: Handle, event: AuditEvent) -> int:
        """Append one entry at its place in the chain now; returns its seq. Never commits.

        Takes the append lock until the caller's transaction ends and integrates
        the queue first, so the seq is final and every earlier entry precedes it.
        """
        columns = event_fields(event)
        with _written():
            head = lock_and_read_head(session)
            mac = self._keys.entry_mac()  # asked under the lock: see Keyring.audit_mac_key
            if uses_queue(dialect_of(session).name):
                head = integrate_all_locked(session, head, mac).head
            columns["time"] = format_time(self._clock())
            seq, _leaf = chain_entry(session, columns, head, mac)
        if isinstance(session, Session):
            self._track(session)
        return seq

    def _track(self, session: Session) -> None:
        session.info[_PENDING] = session.info.get(_PENDING, 0) + 1
        if self._cadence is not None and not session.info.get(_HOOKED):
            session.info[_HOOKED] = True
            sa.event.listen(session, "after_commit", self._after_commit)
            sa.event.listen(session, "after_rollback", self._after_rollback)

    def _after_rollback(self, session: Session) -> None:
        session.info.pop(_PENDING, None)

    def _after_commit(self, session: Session) -> None:
        if self._cadence is not None:
            self._cadence.committed(session.info.pop(_PENDING, 0))


@contextmanager
def _written() -> Iterator[None]:
    """Every failure of an append as AuditWriteFailed, naming the kind of cause only."""
    try:
        yield
    except AuditWriteFailed:
        raise
    except AuditIntegrityError as exc:  # the head it would follow is not a hash: chain nothing
        raise AuditWriteFailed(f"audit entry could not be written: {exc}") from exc
    except SQLAlchemyError as exc:
        cause = (exc.orig if isinstance(exc, sa.exc.StatementError) else None) or exc
        raise AuditWriteFailed(
            f"audit entry could not be written ({type(cause).__name__})"
        ) from exc
    except Exception as exc:  # the key file could not give the MAC key: write nothing
        raise AuditWriteFailed(
            f"audit entry could not be written: no audit MAC key ({type(exc).__name__})"
        ) from exc
