"""The record of inspections (Art 14): one row per inspection, never deleted.

The half-yearly inspection must be recorded; each row keeps the signed report
as it was issued (JSON text: identifiers and counts, never content), its hash
(also in the audit entry that recorded it) and the audit seq of that entry.
Nothing in the code updates or deletes a row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Column, Field, SQLModel

from vault.models import UTCDateTime


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(UTCDateTime(), **kw))


class Inspection(SQLModel, table=True):
    """One inspection of the whole vault and its signed report."""

    __tablename__ = "inspection"

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(index=True, unique=True, max_length=32)
    started_at: datetime = _ts(nullable=False, index=True)
    finished_at: datetime = _ts(nullable=False)
    actor: str = Field(max_length=64)
    # Whether every check passed (content, audit log, and no finding listed).
    clean: bool = False
    report_sha256: str = Field(max_length=64)
    # The signed report document (audit.report_signature), as JSON text.
    report: str = Field(sa_column=Column(sa.Text, nullable=False))
    audit_seq: int | None = None
