"""The vocabulary of decisions: roles, actions, request kinds and states.

All are ``StrEnum``s so that a typo fails at import, not in a production decision,
and so that their values are the exact strings used in ``policy.csv`` and
``chains.toml`` (a test checks both files against these enums).
"""

from __future__ import annotations

from enum import StrEnum

from vault.models import Classification


class Role(StrEnum):
    """The people of the domain. ``custodian`` is deliberately absent: it is an attribute
    of one archive (Art 22), not something a person holds in general."""

    SALESPERSON = "salesperson"
    DEPARTMENT_HEAD = "department_head"
    INFORMATION_OFFICER = "information_officer"
    INFO_SUPERVISOR = "info_supervisor"
    CS_MANAGER = "cs_manager"
    GENERAL_MANAGER = "general_manager"
    COMPLIANCE = "compliance"
    EXTERNAL = "external"
    ADMIN = "admin"


class Action(StrEnum):
    """What a principal asks to do. Content actions need an archive."""

    READ = "read"
    READ_MASKED = "read_masked"
    UPDATE = "update"
    CREATE = "create"
    SEARCH = "search"
    LIST = "list"
    EXPORT = "export"
    PROVIDE = "provide"
    LOAN = "loan"
    DESTROY = "destroy"
    REPORT = "report"
    RECLASSIFY = "reclassify"
    REQUEST = "request"
    APPROVE = "approve"
    REGISTER_LOAN = "register_loan"
    REASSIGN = "reassign"
    HANDOVER = "handover"
    AUDIT = "audit"
    REPORT_LEAK = "report_leak"
    READ_LEAKS = "read_leaks"
    # Moving a leak case on, recording what was done, containing (Art 27: the handlers).
    HANDLE_LEAKS = "handle_leaks"
    # Running and reading the half-yearly inspection (Art 14).
    INSPECT = "inspect"
    # Setting up decoy archives and seeing which they are (the information supervisor).
    MANAGE_DECOYS = "manage_decoys"
    # The customer's access report (PIPL Art 45, GDPR Art 15): what is held, who accessed it.
    ACCESS_REPORT = "access_report"
    MANAGE_USERS = "manage_users"
    MANAGE_KEYS = "manage_keys"


# Actions that touch one archive's content or material: they need archive metadata,
# are refused on destroyed archives, and are what admin/compliance never do.
ARCHIVE_ACTIONS = frozenset(
    {
        Action.READ,
        Action.READ_MASKED,
        Action.UPDATE,
        Action.EXPORT,
        Action.PROVIDE,
        Action.LOAN,
        Action.DESTROY,
        Action.RECLASSIFY,
    }
)


class Clearance(StrEnum):
    """A person's clearance, ordered like the classifications (vault.models)."""

    INTERNAL = "internal"
    SECRET = "secret"  # noqa: S105 - a marking, not a password
    TOP_SECRET = "top_secret"  # noqa: S105


# The one ranking of classifications (and of clearances, which share their values),
# lowest first, in the order ``vault.models.Classification`` declares them. An
# unknown marking has no rank: callers decide which way that fails closed.
RANK: dict[str, int] = {c.value: i for i, c in enumerate(Classification)}


def rank(marking: str, *, unknown: int) -> int:
    """The rank of ``marking``; ``unknown`` when it is not a classification."""
    return RANK.get(marking, unknown)


class RequestKind(StrEnum):
    VIEW = "view"
    LOAN = "loan"
    COPY = "copy"
    EXTERNAL = "external"
    REPORT = "report"
    DESTROY = "destroy"
    # Change requests: they widen who can read, so a second person signs and the
    # change itself is applied in the transaction of the final signature.
    REASSIGN = "reassign"
    RECLASSIFY = "reclassify"
    ROLE = "role"
    HANDOVER = "handover"
    # Changing the items of an approved statistical report (Art 11).
    REPORT_ITEMS = "report_items"


# Kinds that change the vault when approved instead of creating a grant.
CHANGE_KINDS = frozenset(
    {
        RequestKind.REASSIGN,
        RequestKind.RECLASSIFY,
        RequestKind.ROLE,
        RequestKind.HANDOVER,
        RequestKind.REPORT_ITEMS,
    }
)

# Roles that read customer content, directly or by signing the grants that do:
# giving one to an account is a request the information supervisor signs, and an
# account that holds or ever held ``admin`` never gets one.
CONTENT_ROLES = frozenset(
    {
        Role.SALESPERSON,
        Role.DEPARTMENT_HEAD,
        Role.INFORMATION_OFFICER,
        Role.INFO_SUPERVISOR,
        Role.CS_MANAGER,
        Role.GENERAL_MANAGER,
        Role.EXTERNAL,
    }
)

# Roles no one gives alone: the content roles, and ``compliance``, which reads the whole
# audit trail and every request with its reason, recipient and visitor credential.
# Giving one is a ``role`` request the information supervisor signs, and an account
# that holds or ever held ``admin`` never gets one (administrators never see content,
# directly or by becoming a reader of everything). ``CONTENT_ROLES`` stays what it
# says for decisions; this set is only about who may give and hold a role.
SIGNED_ROLES = CONTENT_ROLES | {Role.COMPLIANCE}


# The request kind that would grant an action: what a denial tells the user to file.
KIND_FOR_ACTION = {
    Action.READ: RequestKind.VIEW,
    Action.LOAN: RequestKind.LOAN,
    Action.EXPORT: RequestKind.COPY,
    Action.PROVIDE: RequestKind.EXTERNAL,
    Action.REPORT: RequestKind.REPORT,
    Action.DESTROY: RequestKind.DESTROY,
}


class RequestState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"


class GrantState(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    RETURNED = "returned"
    REVOKED = "revoked"


class LoanState(StrEnum):
    OUT = "out"
    OVERDUE = "overdue"
    RETURNED = "returned"


class NotificationEvent(StrEnum):
    FILED = "filed"
    STAGE_APPROVED = "stage_approved"
    APPROVED = "approved"
    DENIED = "denied"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"
    GRANT_EXPIRED = "grant_expired"
    LOAN_CONFIRMED = "loan_confirmed"
    RETURNED = "returned"
    OVERDUE = "overdue"
    LOAN_DUE = "loan_due"
    REASSIGNED = "reassigned"
    REVOKED = "revoked"
    RECHAINED = "rechained"
    # To whoever may sign a request's next stage now (usual signers, or alternates).
    STAGE_WAITING = "stage_waiting"
    LEAK_REPORTED = "leak_reported"
    LEAK_CHANGED = "leak_changed"
    # To a person whose mail address someone else set or cleared (in the vault only).
    EMAIL_CHANGED = "email_changed"
