"""Tables of detection (issue 13): decoy marks, case keys and the per-hour tallies.

``decoy_archive`` is the only place an archive is known to be a decoy: no
column of the archive itself, nothing in the customer list, the search answer,
the read answer or the read's audit entry says so; only the detection code and
the information supervisor's own route read it. ``detection_key`` makes "the
same rule, the same account, the same window" raise one case (its primary key
is the conditional insert). ``detection_touch`` holds, per account, archive and
clock hour, that the archive was read or exported, whether it was secret and
whether any of those reads fell outside working hours: identifiers and flags,
never content. The sweep fills it from the audit log and counts over it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Column, Field, SQLModel

from vault.models import UTCDateTime


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(UTCDateTime(), **kw))


class DecoyArchive(SQLModel, table=True):
    """An archive the information supervisor set up as a decoy: no legitimate work
    touches it, so any read, search hit or export of it raises a case at once."""

    __tablename__ = "decoy_archive"

    archive_no: str = Field(primary_key=True, max_length=32)
    marked_by: str = Field(max_length=64)
    marked_at: datetime = _ts(nullable=False)
    # Revision of the mark (``policy_counter`` "decoys"): processes catch up by it.
    rev: int = Field(default=0, index=True)
    # When the handlers were last told of a touch; moved on by one conditional UPDATE.
    notified_at: datetime | None = _ts(nullable=True)


class DetectionKey(SQLModel, table=True):
    """One case per rule, account and window: the key is inserted before the case."""

    __tablename__ = "detection_key"

    key: str = Field(primary_key=True, max_length=200)
    case_uid: str = Field(max_length=32)
    created_at: datetime = _ts(nullable=False)


class DetectionTouch(SQLModel, table=True):
    """An account read or exported an archive within a clock hour (local time)."""

    __tablename__ = "detection_touch"

    account: str = Field(primary_key=True, max_length=64)
    hour: str = Field(primary_key=True, max_length=13)  # "2026-03-02T14", local
    archive_no: str = Field(primary_key=True, max_length=32)
    day: str = Field(index=True, max_length=10)  # "2026-03-02", local
    secret: bool = False
    off_hours: bool = False
