"""Tables of the access-request workflow, grants, the loan register and notifications.

Nothing here is ever deleted: requests, signatures, denial reasons, grants and
loan entries stay for compliance (Art 18, 20) after they expire, are withdrawn or
returned; only their state changes.

Grants carry a revision (``rev``) taken from a counter row bumped in the same
transaction that changes them, so every process's in-memory link store can catch
up with "what changed since revision N" in one indexed query (``PolicyEngine.sync``);
a returned loan thus stops granting in every API worker, not only the one that
registered the return.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Column, Field, SQLModel

from foundation.clock import utcnow
from vault.models import UTCDateTime


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(UTCDateTime(), **kw))


def _json() -> Any:
    return Field(default_factory=list, sa_column=Column(sa.JSON, nullable=False))


def _json_or_null() -> Any:
    return Field(default=None, sa_column=Column(sa.JSON, nullable=True))


class AccessRequest(SQLModel, table=True):
    """One filed request (Art 18.1: object, purpose, reason, requester's particulars)."""

    __tablename__ = "access_request"
    __table_args__ = (sa.Index("ix_request_state_expiry", "state", "expires_at"),)

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(unique=True, index=True, max_length=32)
    kind: str = Field(index=True, max_length=16)
    requester: str = Field(index=True, max_length=64)
    requester_department: str = Field(default="", max_length=64)
    requester_external: bool = False
    # External visitors: introduction letter or work-ID number, recorded (Art 18.4).
    credential_ref: str | None = Field(default=None, max_length=128)
    archives: list[str] = _json()
    classification: str = Field(default="internal", max_length=16)
    custodian: str | None = Field(default=None, max_length=64)
    purpose: str = Field(max_length=32)
    reason: str = Field(max_length=2000)
    requested_groups: list[str] = _json()
    groups: list[str] = _json()
    requested_hours: int | None = None
    hours: int | None = None
    # Loans (Art 19.5): material name and copies; external provision: the recipient.
    material: str = Field(default="", max_length=256)
    copies: int = 0
    recipient: str = Field(default="", max_length=256)
    # Copy and external requests: the file format asked for ("csv" | "json"); with
    # ``copies`` it is what the signers approve and what ``POST /exports`` may make.
    export_format: str = Field(default="", max_length=8)
    # The chain as it was when filed (a list of StageSpec.as_dict()).
    stages: list[dict[str, Any]] = _json()
    next_stage: int = 0
    # Each re-derivation of the chain from the archives' current state (a raised
    # classification, a new custodian): when, from what, to what, which stages.
    chain_changes: list[dict[str, Any]] = _json()
    state: str = Field(index=True, max_length=16)
    # Optimistic lock: every step bumps it with UPDATE ... WHERE version = seen.
    version: int = 1
    created_at: datetime = _ts(nullable=False, default=utcnow)
    expires_at: datetime = _ts(nullable=False)
    decided_at: datetime | None = _ts(nullable=True)
    decided_by: str | None = Field(default=None, max_length=64)
    denial_reason: str | None = Field(default=None, max_length=2000)
    grant_uid: str | None = Field(default=None, max_length=32)
    # A change request's change, from -> to (policies.changes); None for grants.
    change: dict[str, Any] | None = Field(default=None, sa_column=Column(sa.JSON, nullable=True))
    # Report requests (Art 10-11, policies.reports): "department" or "all", the
    # departments covered and the report items; null for every other kind.
    report_scope: str | None = Field(default=None, max_length=16)
    report_departments: list[str] | None = _json_or_null()
    report_items: list[str] | None = _json_or_null()


class RequestSignature(SQLModel, table=True):
    """One signer's decision on one stage. At most one per stage (unique constraint)."""

    __tablename__ = "request_signature"
    __table_args__ = (sa.UniqueConstraint("request_id", "stage_index", name="uq_signature_stage"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="access_request.id", index=True)
    stage_index: int
    stage_name: str = Field(max_length=32)
    signer: str = Field(index=True, max_length=64)
    signer_role: str = Field(max_length=32)
    decision: str = Field(max_length=16)  # approve | deny
    reason: str = Field(default="", max_length=2000)
    groups: list[str] = _json()
    hours: int | None = None
    signed_at: datetime = _ts(nullable=False)


class AccessGrant(SQLModel, table=True):
    """What an approved request allows: subject, archives, actions, groups, window."""

    __tablename__ = "access_grant"
    __table_args__ = (sa.Index("ix_grant_state_until", "state", "not_after"),)

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(unique=True, index=True, max_length=32)
    request_id: int = Field(foreign_key="access_request.id", index=True)
    request_uid: str = Field(default="", max_length=32)
    kind: str = Field(max_length=16)
    subject: str = Field(index=True, max_length=64)
    archives: list[str] = _json()
    actions: list[str] = _json()
    groups: list[str] = _json()
    not_before: datetime = _ts(nullable=False)
    not_after: datetime = _ts(nullable=False)
    custodian_signed: bool = False
    # What the chain approved: the archives' highest classification and the
    # top-secret custodian at the final signature. A read under the grant counts
    # only while the archive is at or below that marking with that custodian.
    approved_classification: str = Field(default="internal", max_length=16)
    approved_custodian: str | None = Field(default=None, max_length=64)
    # A loan's grant counts only once the borrower confirmed the register line (Art 19.5).
    awaiting_confirmation: bool = False
    # Copies are counted: each export under the grant takes one, atomically in the
    # export's transaction (policies.copies); none is made once all are used.
    copies: int = 0
    copies_used: int = 0
    purpose: str = Field(max_length=32)
    reason: str = Field(max_length=2000)
    state: str = Field(max_length=16)
    ended_at: datetime | None = _ts(nullable=True)
    rev: int = Field(default=0, index=True)
    # A report grant's reach (Art 10-11, policies.reports): its scope, departments and
    # items, copied from the request; the items change only through a report_items
    # request the general manager signs. Null for every other kind.
    report_scope: str | None = Field(default=None, max_length=16)
    report_departments: list[str] | None = _json_or_null()
    report_items: list[str] | None = _json_or_null()


class LoanEntry(SQLModel, table=True):
    """客户资料外借登记册: one line per loan, cancelled (not deleted) on return (Art 19.5, 20)."""

    __tablename__ = "loan_register"

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(unique=True, index=True, max_length=32)
    request_id: int = Field(foreign_key="access_request.id", index=True)
    grant_id: int = Field(foreign_key="access_grant.id", index=True)
    borrower: str = Field(index=True, max_length=64)
    archives: list[str] = _json()
    material: str = Field(max_length=256)
    copies: int
    reason: str = Field(max_length=2000)
    start_at: datetime = _ts(nullable=False)
    due_at: datetime = _ts(nullable=False)
    borrower_confirmed_at: datetime | None = _ts(nullable=True)
    returned_at: datetime | None = _ts(nullable=True)
    returned_to: str | None = Field(default=None, max_length=64)
    # When the borrower and the register keepers were told the loan is due within a
    # day (once), and last told it is overdue (again each day it stays out).
    due_notified_at: datetime | None = _ts(nullable=True)
    overdue_notified_at: datetime | None = _ts(nullable=True)
    state: str = Field(index=True, max_length=16)  # out | returned


class Notification(SQLModel, table=True):
    """One event a person should see in the vault (``policies.notifications``)."""

    __tablename__ = "policy_notification"

    id: int | None = Field(default=None, primary_key=True)
    recipient: str = Field(index=True, max_length=64)
    request_uid: str | None = Field(default=None, index=True, max_length=32)
    event: str = Field(max_length=32)
    message: str = Field(max_length=1000)
    created_at: datetime = _ts(nullable=False)
    read_at: datetime | None = _ts(nullable=True)


class NotificationMail(SQLModel, table=True):
    """The outbox: a notification's mail, written in the notification's transaction.

    A rolled-back step leaves no row, so nothing is mailed of it; the deliverer
    (``policies.mail_delivery``) sends committed rows later and records each
    attempt here. Subject and body hold no customer content (only ids, archive
    numbers, usernames and a link); ``last_error`` names the kind of failure only.
    """

    __tablename__ = "notification_mail"
    __table_args__ = (sa.Index("ix_mail_state_due", "state", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    notification_id: int = Field(foreign_key="policy_notification.id", index=True)
    recipient: str = Field(max_length=64)
    address: str = Field(max_length=254)
    subject: str = Field(max_length=200)
    body: str = Field(max_length=4000)
    attempts: int = 0
    next_attempt_at: datetime = _ts(nullable=False)
    # Set when a deliverer claims the row (state "sending"); a claim older than the
    # deliverer's bound is taken over, so a crashed worker's row is not lost.
    claimed_at: datetime | None = _ts(nullable=True)
    sent_at: datetime | None = _ts(nullable=True)
    last_error: str | None = Field(default=None, max_length=200)
    state: str = Field(max_length=16)  # queued | sending | sent | failed
    created_at: datetime = _ts(nullable=False)


class PolicyCounter(SQLModel, table=True):
    """Monotonic counters; ``grants`` orders grant changes for ``PolicyEngine.sync``."""

    __tablename__ = "policy_counter"

    name: str = Field(primary_key=True, max_length=32)
    value: int = 0


class HandoverCall(SQLModel, table=True):
    """篇七: when the employee responsible for a customer leaves, the company tells the
    customer and assigns another employee. One line per archive a handover moved: who
    must call (the new owner), and once done, when, how and by whom. Archive numbers
    only: the caller opens the archive through the ordinary audited read for the
    customer's particulars."""

    __tablename__ = "handover_call"
    __table_args__ = (sa.UniqueConstraint("request_uid", "archive_no", name="uq_handover_call"),)

    id: int | None = Field(default=None, primary_key=True)
    archive_no: str = Field(index=True, max_length=32)
    request_uid: str = Field(index=True, max_length=32)
    leaver: str = Field(max_length=64)
    new_owner: str = Field(index=True, max_length=64)
    # The new owner's department when the handover applied: its head sees the line.
    department: str = Field(default="", index=True, max_length=64)
    created_at: datetime = _ts(nullable=False)
    # The day the customer was told (as the caller states it) and when that was recorded.
    done_at: date | None = None
    recorded_at: datetime | None = _ts(nullable=True)
    channel: str | None = Field(default=None, max_length=16)
    done_by: str | None = Field(default=None, max_length=64)
    note: str = Field(default="", max_length=500)
