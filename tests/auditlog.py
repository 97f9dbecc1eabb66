"""Helpers for tests around the real audit log: read it back, or make its append fail.

``entries`` lists what the real log holds, oldest first: tests that check what
was audited read the committed log, so an entry that was rolled back with its
transaction is not there to be found.

``FailingAuditLog`` writes its entry and then raises, exactly like a database
error that surfaces late in an append: a caller that is correctly fail-closed
rolls back, returns no plaintext, and leaves nothing committed.
"""

from __future__ import annotations

from typing import Any

from audit.errors import AuditWriteFailed
from audit.events import AuditEvent
from audit.locks import Handle
from audit.log import AuditLog
from audit.queries import MAX_QUERY_LIMIT, AuditRecord


def entries(log: AuditLog) -> list[AuditRecord]:
    """Every committed entry of the log, oldest first (action, actor, archives, detail, …)."""
    return log.query(limit=MAX_QUERY_LIMIT, newest_first=False)


class FailingAuditLog(AuditLog):
    """An AuditLog whose ``append`` always raises AuditWriteFailed (after writing its row)."""

    def append(self, session: Handle, event: AuditEvent) -> None:
        super().append(session, event)
        raise AuditWriteFailed("simulated audit failure")


def failing_log(vault: Any) -> FailingAuditLog:
    """A failing log on a vault's engine and keys: ``vault.store(audit=failing_log(vault))``."""
    return FailingAuditLog(
        engine=vault.engine, keys=vault.keys, settings=vault.settings, auto_checkpoint=False
    )


def tamper(engine: Any, statement: Any) -> None:
    """Run ``statement`` on the audit tables behind the guards' back, as an attacker with
    database access would, while the served app may be appending and signing.

    The guards are dropped and put back around it. On PostgreSQL, dropping a trigger
    takes an exclusive lock that can meet the service's own checkpoint signer in a
    deadlock; the database then cancels one side, and each step is simply retried.
    """
    import time

    from sqlalchemy.exc import OperationalError

    from audit.guards import install_guards, remove_guards

    def retried(step: Any) -> None:
        for attempt in range(10):
            try:
                step()
                return
            except OperationalError as exc:
                if "deadlock" not in str(exc).lower() or attempt == 9:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def edit() -> None:
        with engine.begin() as conn:
            conn.execute(statement)

    retried(lambda: remove_guards(engine))
    try:
        retried(edit)
    finally:
        retried(lambda: install_guards(engine))
