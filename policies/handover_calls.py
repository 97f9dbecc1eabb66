"""The call list a handover leaves behind (篇七: tell each customer, assign another employee).

When a leaver's handover applies, every archive it moved gets one line naming who
must tell the customer: the new owner. The line is marked done with the day and
the channel by the new owner (or their department head, who answers for the
department's follow-up); it is never deleted.

Who sees which lines: the new owner their own; a department head every line of
their department; information officers and compliance every line (they keep the
archive and check the follow-up). Nobody else, the leaver included. The list
carries archive numbers, usernames and dates only: the caller opens the archive
through the ordinary, decided and audited read to find the customer's number.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from sqlmodel import Session, col, select

from audit.events import AuditAction, AuditEvent
from policies.changes import actor_of, audited_refusals
from policies.decision import Principal
from policies.desk import Desk
from policies.errors import Conflict, InvalidInput, NotFound, Refused
from policies.models import HandoverCall
from policies.roles import Role

CHANNELS = ("phone", "visit", "letter", "email", "other")
SEE_ALL = frozenset({Role.INFORMATION_OFFICER, Role.COMPLIANCE})
MAX_NOTE = 500


def open_calls(
    session: Session,
    *,
    request_uid: str,
    leaver: str,
    new_owner: str,
    department: str,
    archives: Sequence[str],
    now: datetime,
) -> list[HandoverCall]:
    """One open line per moved archive, in the handover's transaction."""
    rows = [
        HandoverCall(
            archive_no=no,
            request_uid=request_uid,
            leaver=leaver,
            new_owner=new_owner,
            department=department,
            created_at=now,
        )
        for no in sorted(archives)
    ]
    session.add_all(rows)
    session.flush()
    return rows


def _sees(viewer: Principal, call: HandoverCall) -> bool:
    if SEE_ALL & viewer.roles or call.new_owner == viewer.username:
        return True
    return (
        Role.DEPARTMENT_HEAD in viewer.roles
        and bool(viewer.department)
        and viewer.department == call.department
    )


def visible(session: Session, viewer: Principal, *, open_only: bool) -> list[HandoverCall]:
    """The lines ``viewer`` may see, oldest first."""
    query = select(HandoverCall).order_by(col(HandoverCall.id))
    if open_only:
        query = query.where(col(HandoverCall.done_at).is_(None))
    if not SEE_ALL & viewer.roles:
        mine = col(HandoverCall.new_owner) == viewer.username
        if Role.DEPARTMENT_HEAD in viewer.roles and viewer.department:
            mine = mine | (col(HandoverCall.department) == viewer.department)
        query = query.where(mine)
    return list(session.exec(query).all())


def mark_done(
    desk: Desk,
    session: Session,
    viewer: Principal,
    call_id: int,
    *,
    channel: str,
    on: date,
    note: str,
    now: datetime,
) -> HandoverCall:
    """The customer was told: by the new owner, or by their department head for them."""
    with audited_refusals(AuditAction.REASSIGN, viewer):
        query = select(HandoverCall).where(HandoverCall.id == call_id)
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        call = session.exec(query).first()
        if call is None or not _sees(viewer, call):
            raise NotFound(f"no handover call {call_id}")
        head = (
            Role.DEPARTMENT_HEAD in viewer.roles
            and bool(viewer.department)
            and viewer.department == call.department
        )
        if viewer.username != call.new_owner and not head:
            raise Refused(
                f"call {call_id} is made by {call.new_owner} (or their department head)",
                rule="not-the-caller",
            )
        if channel not in CHANNELS:
            raise InvalidInput(f"channel must be one of {', '.join(CHANNELS)}")
        if on > now.date():
            raise InvalidInput("at: the day the customer was told cannot be in the future")
        if on < call.created_at.date():
            raise InvalidInput(
                f"at: the handover applied on {call.created_at.date().isoformat()}; "
                "the customer was told after that"
            )
        if len(note) > MAX_NOTE:
            raise InvalidInput(f"note is longer than {MAX_NOTE} characters")
        if call.done_at is not None:
            raise Conflict(
                f"call {call_id} was marked done on {call.done_at.isoformat()} by {call.done_by}"
            )
        call.done_at, call.recorded_at = on, now
        call.channel, call.done_by, call.note = channel, viewer.username, note.strip()
        session.add(call)
        desk.event(
            session,
            AuditEvent(
                action=AuditAction.REASSIGN,
                actor=actor_of(viewer),
                archives=(call.archive_no,),
                reason="the customer was told of the staff change (篇七)",
                # The note stays out of the log: it is free text.
                detail={
                    "op": "handover-call-done",
                    "call": call_id,
                    "request": call.request_uid,
                    "channel": channel,
                    "on": on.isoformat(),
                },
            ),
        )
        session.flush()
        return call
