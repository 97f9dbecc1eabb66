"""Tables of leak cases (Art 27): the case, and every change made to it.

Nothing here is ever deleted or rewritten: a case changes state, and each
change, action or note is a new ``leak_case_event`` row (and an audit entry).
What people type about a leak (what was seen, how it was found, what was done,
why a state changed) may quote customer particulars, so it is stored sealed
(AES-256-GCM under a key from the key file, bound to the case and the field);
only the handlers and compliance read it back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Column, Field, SQLModel

from vault.models import UTCDateTime


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(UTCDateTime(), **kw))


def _json() -> Any:
    return Field(default_factory=list, sa_column=Column(sa.JSON, nullable=False))


def _sealed() -> Any:
    return Field(default=None, sa_column=Column(sa.LargeBinary, nullable=True))


class LeakCase(SQLModel, table=True):
    """A leak report, or a detection's alert, and its investigation."""

    __tablename__ = "leak_case"

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(index=True, unique=True, max_length=32)
    # "report" (a person filed it) or "detection" (a rule raised it; ``rule`` names it).
    source: str = Field(max_length=16)
    rule: str = Field(default="", max_length=64)
    reporter: str = Field(index=True, max_length=64)  # "system" for detection
    # reported → investigating → contained → closed
    state: str = Field(index=True, max_length=16)
    # Once closed: confirmed | unfounded | dismissed (a detection's false alarm).
    outcome: str = Field(default="", max_length=16)
    noticed_at: datetime | None = _ts(nullable=True)
    channel: str = Field(default="unknown", max_length=32)
    # Archive numbers as reported or as the rule found them (numbers only, no content).
    archives: list[str] = _json()
    # The account a detection rule is about (or a suspect named by a handler).
    account: str | None = Field(default=None, index=True, max_length=64)
    # Structured facts of a detection (counts, thresholds, window); no content.
    facts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(sa.JSON, nullable=False))
    what_seen: bytes | None = _sealed()
    how_found: bytes | None = _sealed()
    remedial_action: bytes | None = _sealed()
    created_at: datetime = _ts(nullable=False, index=True)
    updated_at: datetime = _ts(nullable=False)
    closed_at: datetime | None = _ts(nullable=True)


class LeakCaseEvent(SQLModel, table=True):
    """One change to a case: a state change, an action taken, a note, evidence, duties."""

    __tablename__ = "leak_case_event"

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="leak_case.id", index=True)
    at: datetime = _ts(nullable=False)
    actor: str = Field(max_length=64)
    # state | action | note | evidence | duty | containment | fingerprint
    kind: str = Field(max_length=16)
    from_state: str = Field(default="", max_length=16)
    to_state: str = Field(default="", max_length=16)
    # What was done, in fields that carry no customer content (names of actions,
    # usernames, counts, archive numbers, audit seqs).
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(sa.JSON, nullable=False))
    # Why, as typed by the handler: sealed like the report's text.
    reason: bytes | None = _sealed()
