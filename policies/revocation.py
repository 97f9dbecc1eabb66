"""Taking an account's access away at once: grants, pending requests, web sessions.

Shared by a leaver's handover (``policies.handover``) and a leak case's
containment (``policies.leak_containment``). Each step runs in the caller's
transaction and only ever removes access:

- every active grant of the account is revoked and stamped with the next grant
  revision (``next_revision``), so every worker's policy engine drops it at its
  next decision's sync, exactly as it picks up an approval;
- its pending requests are withdrawn, so no signature given afterwards turns
  one into a grant;
- its open web sessions are ended (the same rows ``api.web.sessions`` ends at
  sign-out). Revoking the account's tokens (``directory.revoke_tokens``) ends
  them at their next request as well; ending the rows says so in the table.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, select

from policies.loading import next_revision
from policies.models import AccessGrant, AccessRequest
from policies.roles import GrantState, RequestState
from vault.auth_models import WebSession

_SESSIONS = WebSession.__table__  # type: ignore[attr-defined]
# A web session lives at most a week (``Settings.web_absolute_hours`` ≤ 7 × 24), so
# a row older than this is dead whatever the settings; an ended one is kept a day.
SESSION_ROWS_KEPT = timedelta(days=8)
ENDED_SESSION_ROWS_KEPT = timedelta(days=1)


def revoke_grants(session: Session, username: str, now: datetime) -> list[str]:
    """Revoke every active grant whose subject is ``username``; returns their uids."""
    grants = session.exec(
        select(AccessGrant)
        .where(AccessGrant.subject == username, AccessGrant.state == GrantState.ACTIVE)
        .order_by(AccessGrant.id)  # type: ignore[arg-type]
        .with_for_update()
    ).all()
    if not grants:
        return []
    # One revision for all of them: they commit together, and an engine syncing
    # "after revision N" reads every row of one revision at once.
    rev = next_revision(session)
    for grant in grants:
        grant.state = GrantState.REVOKED.value
        grant.ended_at = now
        grant.rev = rev
        session.add(grant)
    session.flush()
    return [g.uid for g in grants]


def withdraw_requests(session: Session, username: str, now: datetime, *, by: str) -> list[str]:
    """Withdraw every pending request filed by ``username``; returns their uids."""
    withdrawn: list[str] = []
    for req in session.exec(
        select(AccessRequest)
        .where(AccessRequest.requester == username, AccessRequest.state == RequestState.PENDING)
        .order_by(AccessRequest.id)  # type: ignore[arg-type]
        .with_for_update()
    ).all():
        req.state = RequestState.WITHDRAWN.value
        req.decided_at = now
        req.decided_by = by
        req.version += 1
        session.add(req)
        withdrawn.append(req.uid)
    session.flush()
    return withdrawn


def end_web_sessions(session: Session, username: str, now: datetime) -> int:
    """End every open web session of ``username``; returns how many were open."""
    result = session.connection().execute(
        sa.update(_SESSIONS)
        .where(_SESSIONS.c.username == username, _SESSIONS.c.ended_at.is_(None))
        .values(ended_at=now)
    )
    return int(result.rowcount or 0)


def purge_web_sessions(session: Session, now: datetime) -> int:
    """Delete the rows of sessions that can never be used again; returns how many.

    Every sign-in adds a row and nothing else removes one, so the table would
    grow for ever. Only dead rows go: ended a day ago, or older than any
    session may live. The rows hold no customer content and no secret (the
    key is a SHA-256 of the cookie's); sign-ins and sign-outs are in the log.
    """
    result = session.connection().execute(
        sa.delete(_SESSIONS).where(
            sa.or_(
                _SESSIONS.c.ended_at < now - ENDED_SESSION_ROWS_KEPT,
                _SESSIONS.c.created_at < now - SESSION_ROWS_KEPT,
            )
        )
    )
    return int(result.rowcount or 0)
