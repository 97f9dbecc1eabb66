"""The table of evidence frozen into leak cases (Art 27): audit entries with their proofs.

A row is written once and never changed: the entries as they stood in the log,
an inclusion proof of each against one signed checkpoint, the question that
found them (archives or account, window, the log's head at the time) and a
SHA-256 digest of all of it that the attaching ``leak:change`` audit entry
(``audit_seq``) repeats. Audit entries hold identifiers only, so neither does
this table hold customer content.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Column, Field, SQLModel

from vault.models import UTCDateTime


class LeakEvidence(SQLModel, table=True):
    __tablename__ = "leak_evidence"

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(index=True, unique=True, max_length=32)
    case_id: int = Field(foreign_key="leak_case.id", index=True)
    # "archives" (who touched them) or "account" (what it touched).
    kind: str = Field(max_length=16)
    account: str | None = Field(default=None, max_length=64)
    archives: list[str] = Field(default_factory=list, sa_column=Column(sa.JSON, nullable=False))
    since: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    until: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    # The log's head when frozen: the query is bounded by it, so it can be asked again.
    head_seq: int = Field(sa_column=Column(sa.BigInteger, nullable=False))
    entries: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(sa.JSON, nullable=False)
    )
    tree_size: int = Field(sa_column=Column(sa.BigInteger, nullable=False))
    checkpoint: str = Field(sa_column=Column(sa.Text, nullable=False))
    proofs: dict[str, Any] = Field(default_factory=dict, sa_column=Column(sa.JSON, nullable=False))
    digest: str = Field(max_length=64)
    # The audit entry that recorded the attachment (its detail repeats the digest).
    audit_seq: int | None = Field(default=None, sa_column=Column(sa.BigInteger, nullable=True))
    created_by: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
