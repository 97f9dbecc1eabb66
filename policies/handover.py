"""A leaver's handover (篇七) as a request: one person starts it, others finish it.

An administrator (who disables the leaver) or the leaver's department head files
a ``handover`` request naming the successor. A handover moves the leaver's
archives and contact listings to the successor, so it needs the signatures a
reassignment of those archives needs (``chains.toml``: the handover chain is the
reassignment chain, resolved for the highest classification among them): the
leaver's department head (the general manager when the head filed it), an
information officer, the customer-service manager for secret or top-secret
archives, and the custodian for top-secret ones. Top-secret archives with
different custodians cannot share one custodian stage: such a handover is
refused when filed, and the filer hands those archives over by reassign
requests first (each signed by its own custodian), then files the handover.

The request records, when filed, the archives it moves (owned and listed on)
with their classification, custodian and department. The final signature
applies it only if the leaver still holds exactly those archives, marked and
kept as recorded; otherwise it is refused as stale and must be filed again.
It then moves those archives and listings, revokes every grant of the leaver
(their loans' grants included: a loan is approved for its borrower, never for a
successor), withdraws their pending requests and disables them
(``Workflow.apply_handover``), in that one transaction. The leaver's open loans
stay on the register in the leaver's name until the material is returned.

The successor is an enabled salesperson of the leaver's department, never a
visitor and never an account that holds or held ``admin``: checked when filed
and again when applied.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, select

from audit.events import AuditAction
from policies.changes import audits_refusals, check_reader, file_change, stale
from policies.decide import Principal
from policies.errors import InvalidInput, NotFound, Refused
from policies.grant_terms import RANK
from policies.models import AccessRequest, Notification
from policies.roles import Action, NotificationEvent, RequestKind, Role
from vault.models import Archive, ArchiveContact, ArchiveStatus, User

if TYPE_CHECKING:
    from policies.workflow import Workflow

# archive number -> [classification, custodian, department] (flat: the request's
# change is copied into audit details, which nest at most four levels)
Holdings = dict[str, list[str | None]]


def _marks(archive: Archive) -> list[str | None]:
    return [archive.classification, archive.custodian or None, archive.department]


def holdings(session: Session, username: str, *, lock: bool = False) -> dict[str, Holdings]:
    """The active archives ``username`` owns and is listed on as a contact, with what
    decides who must sign their move (locked on PostgreSQL when ``lock``)."""
    owned_q = select(Archive).where(
        Archive.owner == username, Archive.status == ArchiveStatus.ACTIVE.value
    )
    listed_q = (
        select(Archive)
        .join(ArchiveContact, col(ArchiveContact.archive_id) == col(Archive.id))
        .where(ArchiveContact.username == username, Archive.status == ArchiveStatus.ACTIVE.value)
    )
    if lock and session.get_bind().dialect.name == "postgresql":
        owned_q = owned_q.with_for_update()
        listed_q = listed_q.with_for_update(of=Archive)  # type: ignore[arg-type]
    return {
        "owned": {a.archive_no: _marks(a) for a in session.exec(owned_q).all()},
        "listed": {a.archive_no: _marks(a) for a in session.exec(listed_q).all()},
    }


def _chain_inputs(held: dict[str, Holdings], department: str) -> tuple[str, str | None]:
    """The highest classification among the archives and their top-secret custodian;
    refuses what one handover cannot carry."""
    marks = {**held["owned"], **held["listed"]}
    foreign = sorted(no for no, m in marks.items() if m[2] != department)
    if foreign:
        raise InvalidInput(
            f"archive(s) {', '.join(foreign[:20])} belong to another department than the "
            f"leaver's ({department or 'none'}); hand them over by reassign requests "
            "(POST /customers/{no}/owner) first"
        )
    highest = max(
        (str(m[0]) for m in marks.values()),
        key=lambda c: RANK.get(c, 99),
        default="internal",
    )
    top = {no: m[1] for no, m in marks.items() if m[0] == "top_secret"}
    keepers = set(top.values())
    if len(keepers) > 1:
        raise InvalidInput(
            f"the leaver's top-secret archives {', '.join(sorted(top)[:20])} have different "
            "custodians (or some have none), and a handover is signed by one; hand them "
            "over by reassign requests (POST /customers/{no}/owner, each signed by its own "
            "custodian) first, then file the handover"
        )
    return highest, next(iter(keepers), None)


@audits_refusals(AuditAction.REASSIGN, who="actor")
def file_handover(
    wf: Workflow,
    session: Session,
    *,
    from_user: str,
    to_user: str,
    actor: Principal,
    now: datetime,
    reason: str = "",
) -> AccessRequest:
    leaver = session.exec(select(User).where(User.username == from_user)).first()
    if leaver is None:
        raise NotFound(f"no user {from_user!r}")
    if from_user == to_user:
        raise InvalidInput("hand over to someone else")
    allowed = {Role.DEPARTMENT_HEAD, Role.ADMIN} & actor.roles
    if not allowed or not wf._may(actor, Action.HANDOVER, allowed, now):
        raise Refused(
            "a handover is started by the leaver's department head or an administrator "
            "and signed by others",
            rule="wrong-role",
        )
    if Role.ADMIN not in allowed and actor.department != leaver.department:
        raise Refused(
            "a department head hands over only their own department's staff",
            rule="wrong-department",
        )
    if actor.username == from_user:
        raise Refused("nobody hands over their own clients", rule="self-approval")
    check_reader(session, to_user, department=leaver.department, what="the successor")
    held = holdings(session, from_user)
    classification, custodian = _chain_inputs(held, leaver.department)
    moved = sorted({*held["owned"], *held["listed"]})
    change = {
        "from": from_user,
        "to": to_user,
        "department": leaver.department,
        "archives": sorted(held["owned"]),
        "listed_on": sorted(held["listed"]),
        # What the chain was resolved from; the final signature compares it with now.
        "owned": held["owned"],
        "listed": held["listed"],
        "subjects": [to_user],
    }
    return file_change(
        wf,
        session,
        actor,
        kind=RequestKind.HANDOVER,
        change=change,
        reason=reason or f"staff change: {from_user} leaves; {to_user} takes over (篇七)",
        now=now,
        archives=moved,
        classification=classification,
        custodian=custodian,
    )


def apply_handover(
    wf: Workflow, session: Session, req: AccessRequest, approver: Principal, now: datetime
) -> dict[str, Any]:
    change = req.change or {}
    leaver = session.exec(select(User).where(User.username == change["from"])).first()
    if leaver is None or leaver.department != change["department"]:
        raise stale(req, f"the account {change['from']}")
    now_held = holdings(session, leaver.username, lock=True)
    if now_held != {"owned": change.get("owned"), "listed": change.get("listed")}:
        # The chain was resolved from these archives' classification and custodian.
        raise stale(
            req,
            f"the archives {change['from']} owns or is listed on (which, their "
            "classification or custodian)",
        )
    check_reader(session, change["to"], department=leaver.department, what="the successor")
    result = wf.apply_handover(
        session,
        from_user=change["from"],
        to_user=change["to"],
        actor=approver,
        now=now,
        archives=change["archives"],
        listed_on=change["listed_on"],
    )
    if result.loans_to_return:
        session.add(
            Notification(
                recipient=req.requester,
                request_uid=req.uid,
                event=NotificationEvent.REASSIGNED.value,
                message=(
                    f"handover {req.uid} applied; {change['from']}'s open loan(s) "
                    f"{', '.join(result.loans_to_return)} were not handed over: their access "
                    "ended, and the material must be returned to an information officer"
                )[:1000],
                created_at=now,
            )
        )
    return asdict(result)
