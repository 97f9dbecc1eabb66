"""The vocabulary of archive acts: who acts, what an act returns, how a refusal reads.

Kept apart from ``archive_acts`` so the acts stay one concern and anything that
only names a caller or an export (pages, exports, leak cases) needs no more.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from audit.events import Actor, AuditAction, AuditEvent, Outcome
from policies import copies
from policies.decision import Decision, Principal
from policies.errors import AccessDenied, PolicyError
from policies.fingerprint import Row
from policies.models import AccessGrant, AccessRequest
from vault.meta import ArchiveMeta
from vault.reading import ArchiveView


class NotCovered(PolicyError):
    """Refused for a reason the caller can fix: a grant or field group does not cover it."""

    code = "access-denied"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who acts: the principal decisions look at and the actor audit entries name."""

    principal: Principal
    actor: Actor

    @property
    def username(self) -> str:
        return self.principal.username


@dataclass(frozen=True, slots=True)
class Created:
    """A new archive, and the pending request that adds the contacts it named, if any."""

    meta: ArchiveMeta
    decision: Decision
    contacts_request: AccessRequest | None = None


@dataclass(frozen=True, slots=True)
class Export:
    views: list[ArchiveView]
    grant: AccessGrant
    groups: tuple[str, ...]
    format: str = copies.DEFAULT_FORMAT
    copy: int = 1  # this export is copy ``copy`` of ``grant.copies``
    # The rows the file holds: marked with the export's fingerprint (``policies.fingerprint``).
    rows: list[Row] = field(default_factory=list)
    fingerprint: str | None = None


def denial(decision: Decision, actor: Actor, action: AuditAction, **kw: Any) -> AccessDenied:
    """``AccessDenied`` carrying the audit event of the refused attempt."""
    exc = AccessDenied(decision)
    exc.event = AuditEvent(
        action=action,
        actor=actor,
        outcome=Outcome.DENIED,
        reason=decision.why[:500],
        detail={"basis": decision.basis},
        **kw,
    )
    return exc
