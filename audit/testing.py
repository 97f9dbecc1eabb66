"""Test doubles for code that depends on the audit log (the store's fail-closed tests).

``FailingAuditLog`` writes its entry and then raises, exactly like a database
error that surfaces late in an append: a caller that is correctly fail-closed
rolls back, returns no plaintext, and leaves nothing committed.
"""

from __future__ import annotations

from typing import Any

from audit.errors import AuditWriteFailed
from audit.events import AuditEvent
from audit.log import AuditLog


class FailingAuditLog(AuditLog):
    """An AuditLog whose ``append`` always raises AuditWriteFailed (after writing its row)."""

    def append(self, session: Any, event: AuditEvent) -> int:
        super().append(session, event)
        raise AuditWriteFailed("simulated audit failure")


def failing_log(vault: Any) -> FailingAuditLog:
    """A failing log on a vault's engine and keys: ``vault.store(audit=failing_log(vault))``."""
    return FailingAuditLog(
        engine=vault.engine, keys=vault.keys, settings=vault.settings, auto_checkpoint=False
    )
