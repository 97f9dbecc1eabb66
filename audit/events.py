"""What an audit entry says, shared by every writer (store, policies, API).

``AuditAction`` is an enum so a typo fails at import, not in the log. An event
carries identifiers and outcomes only: never customer content. A value that
could reveal a person (a searched phone number) is passed already HMAC'd.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from audit.locks import Handle


class AuditAction(StrEnum):
    READ = "archive:read"
    SEARCH = "archive:search"
    LIST = "archive:list"
    CREATE = "archive:create"
    UPDATE = "archive:update"
    IMPORT = "archive:import"
    EXPORT = "archive:export"
    REPORT = "archive:report"
    REASSIGN = "archive:reassign"
    RECLASSIFY = "archive:reclassify"
    DESTROY = "archive:destroy"
    CONSENT_WITHDRAW = "archive:consent-withdraw"
    CONSENT_RECORD = "archive:consent-record"
    INTERACTION_ADD = "archive:interaction-add"
    INTERACTION_READ = "archive:interaction-read"
    ATTACHMENT_ADD = "archive:attachment-add"
    ATTACHMENT_READ = "archive:attachment-read"
    ATTACHMENT_LIST = "archive:attachment-list"
    LOAN = "loan:open"
    LOAN_RETURN = "loan:return"
    REQUEST_FILE = "request:file"
    REQUEST_APPROVE = "request:approve"
    REQUEST_DENY = "request:deny"
    REQUEST_WITHDRAW = "request:withdraw"
    REQUEST_EXPIRE = "request:expire"
    REQUEST_RECHAIN = "request:rechain"
    REQUEST_LIST = "request:list"
    LOGIN = "auth:login"
    LOGIN_FAILED = "auth:login-failed"
    LOGOUT = "auth:logout"
    USER_CHANGE = "user:change"
    USER_LIST = "user:list"
    KEY_ROTATE = "keys:rotate"
    POLICY_CHANGE = "policy:change"
    VAULT_INIT = "vault:init"
    SEAL_MANIFESTS = "vault:seal-manifests"
    MASK_NAMES = "vault:mask-names"
    AUDIT_READ = "audit:read"
    # A whole-log verification and its result (ok, entries): the newest one is the
    # "verification status" shown without re-hashing the log on every look.
    AUDIT_VERIFY = "audit:verify"
    LEAK_REPORT = "leak:report"
    LEAK_CHANGE = "leak:change"
    LEAK_READ = "leak:read"
    # The half-yearly inspection (Art 14): a run (with its report's hash), a read of one.
    INSPECT = "vault:inspect"
    INSPECTION_READ = "inspection:read"
    DECOY_MARK = "detection:decoy-mark"
    DECOY_LIST = "detection:decoy-list"
    ACCESS_REPORT = "archive:access-report"
    # The service's readiness probe proved it can append (at most once a minute a worker).
    READY = "health:ready"
    # A backup written (``archive-vault backup``) and a backup restored, with the
    # audit entries and destructions a newer bundle brought back.
    BACKUP = "vault:backup"
    RESTORE = "vault:restore"


class Outcome(StrEnum):
    ALLOWED = "allowed"
    DENIED = "denied"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a username and the role they act in (``system`` for CLI maintenance)."""

    username: str
    role: str = "system"
    client: str | None = None


SYSTEM = Actor("system", "system")


@dataclass(frozen=True, slots=True)
class AuditEvent:
    action: AuditAction
    actor: Actor
    outcome: Outcome = Outcome.ALLOWED
    archives: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    grant_id: str | None = None
    purpose: str | None = None
    reason: str | None = None
    # Identifiers and counts only (e.g. {"field": "mobile_phone", "query_hmac": "…"}).
    detail: dict[str, Any] = field(default_factory=dict)


class AuditSink(Protocol):
    """Appends one event inside the caller's transaction (fail-closed: raise to abort)."""

    def append(self, session: Handle, event: AuditEvent) -> None: ...

    def append_sequenced(self, session: Handle, event: AuditEvent) -> int: ...
