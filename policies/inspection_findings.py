"""What an inspection lists besides the ciphertexts: the register's loose ends.

Overdue loans (Art 20), archives past their retention date (Art 25, to be
proposed for destruction), secret and top-secret archives without a keeper who
may keep them (Art 22, the rule of ``policies.custodians``), and grants that
outlived their users (active grants whose holder is disabled or no longer
exists: access nobody should hold any more). Identifiers, dates and the
custodian rule's words only; every list is read in one query (streamed), so
the cost does not grow with a query per archive.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from policies.custodians import KEPT_LEVELS, custodian_problem
from policies.models import AccessGrant, LoanEntry
from policies.roles import GrantState, LoanState
from vault.models import Archive, ArchiveContact, ArchiveStatus, User

# The longest list a report carries of one finding (its total is always given).
LIST_CAP = 10_000


@dataclass(frozen=True, slots=True)
class _Kept:
    """An archive as the custodian rule sees it (owner and contacts)."""

    owner: str
    contacts: tuple[str, ...] = ()


def _capped(items: list[dict[str, Any]], total: int) -> dict[str, Any]:
    return {"total": total, "items": items[:LIST_CAP], "truncated": total > LIST_CAP}


def overdue_loans(session: Session, now: datetime) -> dict[str, Any]:
    rows = session.exec(
        select(LoanEntry)
        .where(LoanEntry.state != LoanState.RETURNED.value, col(LoanEntry.due_at) <= now)
        .order_by(col(LoanEntry.due_at))
    ).all()
    items = [
        {
            "loan": r.uid,
            "borrower": r.borrower,
            "archives": list(r.archives),
            "due_at": r.due_at.isoformat(),
        }
        for r in rows
    ]
    return _capped(items, len(items))


def past_retention(session: Session, now: datetime) -> dict[str, Any]:
    stmt = (
        sa.select(col(Archive.archive_no), col(Archive.retention_until))
        .where(
            col(Archive.status) == ArchiveStatus.ACTIVE.value,
            col(Archive.retention_until) < now.date(),
        )
        .order_by(col(Archive.retention_until), col(Archive.archive_no))
        .execution_options(yield_per=1000)
    )
    items, total = [], 0
    for no, until in session.connection().execute(stmt):
        total += 1
        if total <= LIST_CAP:
            items.append({"archive_no": no, "retention_until": until.isoformat()})
    return _capped(items, total)


def unkept_archives(session: Session) -> dict[str, Any]:
    """Secret and top-secret archives whose custodian is missing or may not keep them.

    The custodian's own standing (a user, enabled, an officer or the supervisor,
    never an administrator or a visitor) is asked once per custodian; whether
    they are the archive's owner or contact, per archive from the same rows.
    """
    rows = (
        session.connection()
        .execute(
            sa.select(
                col(Archive.id),
                col(Archive.archive_no),
                col(Archive.classification),
                col(Archive.owner),
                col(Archive.custodian),
            )
            .where(
                col(Archive.classification).in_(sorted(KEPT_LEVELS)),
                col(Archive.status) == ArchiveStatus.ACTIVE.value,
            )
            .order_by(col(Archive.archive_no))
        )
        .all()
    )
    contact_keepers = {
        aid
        for (aid,) in session.connection().execute(
            sa.select(col(ArchiveContact.archive_id))
            .join(Archive, col(Archive.id) == col(ArchiveContact.archive_id))
            .where(col(ArchiveContact.username) == col(Archive.custodian))
        )
    }
    standing: dict[str | None, str | None] = {}
    items: list[dict[str, Any]] = []
    for aid, no, level, owner, custodian in rows:
        if custodian not in standing:
            standing[custodian] = custodian_problem(session, _Kept(owner=""), custodian)
        problem = standing[custodian]
        if problem is None and (custodian == owner or aid in contact_keepers):
            contacts = (str(custodian),) if aid in contact_keepers else ()
            problem = custodian_problem(session, _Kept(owner, contacts), custodian)
        if problem is not None:
            items.append(
                {
                    "archive_no": no,
                    "classification": level,
                    "custodian": custodian,
                    "problem": problem,
                }
            )
    return _capped(items, len(items))


def orphaned_grants(session: Session, now: datetime) -> dict[str, Any]:
    """Active grants whose holder is disabled or gone (they outlived their users)."""
    rows = (
        session.connection()
        .execute(
            sa.select(
                col(AccessGrant.uid),
                col(AccessGrant.request_uid),
                col(AccessGrant.kind),
                col(AccessGrant.subject),
                col(AccessGrant.not_after),
                col(User.id),
            )
            .outerjoin(User, col(User.username) == col(AccessGrant.subject))
            .where(
                col(AccessGrant.state) == GrantState.ACTIVE.value,
                col(AccessGrant.not_after) > now,
                sa.or_(col(User.id).is_(None), col(User.disabled).is_(True)),
            )
            .order_by(col(AccessGrant.uid))
        )
        .all()
    )
    items = [
        {
            "grant": uid,
            "request": request,
            "kind": kind,
            "holder": subject,
            "why": "gone" if user_id is None else "disabled",
            "not_after": _iso(not_after),
        }
        for uid, request, kind, subject, not_after, user_id in rows
    ]
    return _capped(items, len(items))


def _iso(moment: Any) -> str:
    return moment.isoformat() if hasattr(moment, "isoformat") else str(moment)
