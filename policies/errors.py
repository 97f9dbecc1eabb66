"""The exceptions of ``policies``, one per thing a caller can act on.

Messages name the request, archive number, stage or rule involved and never
customer content, so they are safe to show a user, print from the CLI or log.
The API maps each ``code`` to a problem+json ``type`` in one place. A refusal may
carry the audit event describing the refused attempt (``event``): the refusing
transaction is rolled back, so a caller that wants refused attempts in the audit
log appends ``event`` in a transaction of its own.
"""

from __future__ import annotations

from typing import Any, Protocol

from audit.events import AuditEvent


class Explained(Protocol):
    """What a denial carries (``policies.decision.Decision`` is one). A protocol, so
    that the errors every module raises depend on nothing else in ``policies``."""

    @property
    def why(self) -> str: ...

    def as_dict(self) -> dict[str, Any]: ...


class PolicyError(Exception):
    """Base of every error ``policies`` raises on purpose."""

    code = "policy-error"

    def __init__(self, message: str, *, event: AuditEvent | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.event = event

    def __str__(self) -> str:
        return self.message


class ConfigError(PolicyError):
    """``model.conf``, ``policy.csv`` or ``chains.toml`` is invalid: fail at start-up."""

    code = "policy-config"


class AccessDenied(PolicyError):
    """A decision denied an action; ``decision.why`` says what to do next."""

    code = "access-denied"

    def __init__(self, decision: Explained) -> None:
        super().__init__(decision.why)
        self.decision = decision


class UnknownUser(PolicyError):
    code = "unknown-user"


class UserDisabled(PolicyError):
    code = "user-disabled"


class NotFound(PolicyError):
    """An archive, request or loan that does not exist."""

    code = "not-found"


class InvalidInput(PolicyError):
    """The caller's input is malformed or incomplete (a 4xx, never a 500)."""

    code = "invalid-input"


class Refused(PolicyError):
    """A workflow rule refused the step (self-approval, double signing, ...)."""

    code = "refused"

    def __init__(self, message: str, *, rule: str, event: AuditEvent | None = None) -> None:
        super().__init__(message, event=event)
        self.rule = rule


class Conflict(PolicyError):
    """Someone else moved the request first; reload and try again."""

    code = "conflict"


class Unfinishable(Conflict):
    """No sequence of people could sign every stage of the chain a request needs.

    A conflict with the staff as they are now (who holds which role, who is the
    custodian, who is disabled), not with the caller's input: the same request
    files once the fix the message names is made. ``stage`` is the stage's name.
    """

    code = "unfinishable"
    rule = "unfinishable"

    def __init__(self, message: str, *, stage: str, event: AuditEvent | None = None) -> None:
        super().__init__(message, event=event)
        self.stage = stage
