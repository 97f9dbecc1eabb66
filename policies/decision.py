"""The values a decision speaks in: who asks (``Principal``) and the answer (``Decision``).

Plain frozen data with no database and no Casbin, so every layer above
(``policies``' services, the API, the CLI) can hold and pass them around.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from policies.errors import AccessDenied


@dataclass(frozen=True, slots=True)
class Principal:
    """Who asks. Built from the database by ``policies.directory.load_principal``."""

    username: str
    roles: frozenset[str]
    department: str = ""
    clearance: str = "internal"
    external: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", frozenset(self.roles))

    @property
    def role_label(self) -> str:
        """The roles as one string for an audit ``Actor``."""
        return ",".join(sorted(self.roles)) or "none"


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer. Show ``groups`` in clear and ``masked_groups`` only masked
    (``FieldSpec.masked``); show nothing else. ``purpose``/``reason``/``grant_id``
    go into the audit entry of whatever the decision allowed."""

    allowed: bool
    action: str
    why: str
    basis: str  # owner | grant | role | masked | denied
    rule: tuple[str, ...] = ()
    grant_id: str | None = None
    purpose: str | None = None
    reason: str | None = None
    groups: tuple[str, ...] = ()
    masked_groups: tuple[str, ...] = ()
    next_step: str | None = None
    valid_until: datetime | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def shows_in_clear(self, group: str) -> bool:
        """Whether this decision lets the caller see ``group``'s values as they are:
        allowed, covered (a grant covers only its groups) and not masked. Anything
        that compares or returns a clear value (a search) asks this, not ``allowed``,
        which is also true for a masked read."""
        return self.allowed and group in self.groups and group not in self.masked_groups

    def require(self) -> Decision:
        """Return self when allowed, else raise ``AccessDenied`` (for service code)."""
        if not self.allowed:
            raise AccessDenied(self)
        return self

    def as_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "action": self.action,
            "why": self.why,
            "basis": self.basis,
            "rule": list(self.rule),
            "grant_id": self.grant_id,
            "purpose": self.purpose,
            "reason": self.reason,
            "groups": list(self.groups),
            "masked_groups": list(self.masked_groups),
            "next_step": self.next_step,
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
        }


def denied(
    action: str,
    why: str,
    *,
    rule: tuple[str, ...] = (),
    next_step: str | None = None,
) -> Decision:
    """A denial: ``why`` says what was missing, ``next_step`` what to do about it."""
    return Decision(
        allowed=False, action=str(action), why=why, basis="denied", rule=rule, next_step=next_step
    )
