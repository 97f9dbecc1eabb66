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

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Column, Field, SQLModel

from foundation.clock import utcnow
from vault.models import UTCDateTime


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(UTCDateTime(), **kw))


def _json() -> Any:
    return Field(default_factory=list, sa_column=Column(sa.JSON, nullable=False))


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
    overdue_notified: bool = False
    state: str = Field(index=True, max_length=16)  # out | returned


class Notification(SQLModel, table=True):
    """One event the requester should see (ready to be sent by mail or chat later)."""

    __tablename__ = "policy_notification"

    id: int | None = Field(default=None, primary_key=True)
    recipient: str = Field(index=True, max_length=64)
    request_uid: str | None = Field(default=None, index=True, max_length=32)
    event: str = Field(max_length=32)
    message: str = Field(max_length=1000)
    created_at: datetime = _ts(nullable=False)
    read_at: datetime | None = _ts(nullable=True)


class PolicyCounter(SQLModel, table=True):
    """Monotonic counters; ``grants`` orders grant changes for ``PolicyEngine.sync``."""

    __tablename__ = "policy_counter"

    name: str = Field(primary_key=True, max_length=32)
    value: int = 0
