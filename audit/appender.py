"""Appending: one entry in the caller's open transaction, in its place in the chain.

Fail-closed by construction: ``Appender.append`` writes into the caller's open
transaction and never commits. The caller commits only after it has the entry,
and releases plaintext only after the commit, so an append that raises means
the read never happened as far as anyone outside the process can tell.

The head is read under the append lock (``audit.locks``), so concurrent
writers form one linear chain. Call ``append`` late in the transaction: it
serialises everything after it.

Each archive number an entry names also gets a row in ``audit_archive_ref``
(``audit.models``), inserted right after the entry in the same transaction:
the index that lets "every entry about this archive" skip the JSON text.

Every entry carries a MAC under the key file's audit MAC key (``audit.mac``),
so an entry written or rewritten by anyone without the key file (the
application's own database role included) is named by ``verify``.

The hot read path appends on a bare DBAPI transaction and reports its commit
itself (``AuditLog.committed``); an ORM session's commit is reported by the
session's own events, so the signing cadence (``audit.cadence``) hears of both.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from audit.cadence import SigningCadence
from audit.codec import canonical_for_columns, event_fields, format_time
from audit.errors import AuditWriteFailed
from audit.events import AuditEvent
from audit.locks import Handle, lock_and_read_head
from audit.log_keys import LogKeys
from audit.merkle import ZERO_HASH, leaf_hash
from audit.models import archive_ref_table, entry_table
from foundation.rawsql import Raw

_INSERT = Raw(entry_table.insert(), column_keys=[c.key for c in entry_table.columns])
_INSERT_REF = Raw(archive_ref_table.insert(), column_keys=["archive_no", "seq"])
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

    def append(self, session: Handle, event: AuditEvent) -> int:
        """Append one entry in the caller's open transaction; returns its seq. Never commits.

        Raises AuditWriteFailed for an invalid event or a database failure; the
        caller must then roll back and release nothing.
        """
        columns = event_fields(event)
        try:
            head = lock_and_read_head(session)
            seq, prev = (1, ZERO_HASH) if head is None else (head[0] + 1, head[1])
            columns["seq"] = seq
            columns["time"] = format_time(self._clock())  # stamped under the lock: monotone
            columns["prev_hash"] = prev
            columns["entry_hash"] = leaf = leaf_hash(canonical_for_columns(columns))
            mac = self._keys.entry_mac()  # asked under the lock: see Keyring.audit_mac_key
            columns["mac"] = None if mac is None else mac.compute(seq, prev, leaf)
            _INSERT.execute(session, columns)
            if event.archives:  # the archive index beside the log, same transaction
                refs = [{"archive_no": no, "seq": seq} for no in dict.fromkeys(event.archives)]
                if len(refs) == 1:
                    _INSERT_REF.execute(session, refs[0])
                else:
                    _INSERT_REF.execute_many(session, refs)
        except AuditWriteFailed:
            raise
        except SQLAlchemyError as exc:
            cause = (exc.orig if isinstance(exc, sa.exc.StatementError) else None) or exc
            raise AuditWriteFailed(
                f"audit entry could not be written ({type(cause).__name__})"
            ) from exc
        except Exception as exc:  # the key file could not give the MAC key: write nothing
            raise AuditWriteFailed(
                f"audit entry could not be written: no audit MAC key ({type(exc).__name__})"
            ) from exc
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
