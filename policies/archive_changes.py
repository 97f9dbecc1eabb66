"""Who owns an archive, who else is on it, how it is classified and who keeps it.

Each of these decides who can read the archive, so widening access is a request:

* Reassigning the archive or adding contacts is a ``reassign`` request, filed by
  the archive's department head (own department only) or an information officer,
  never by an administrator. The new owner and every added contact is an enabled
  salesperson of the archive's department, never a visitor and never an account
  that holds or held ``admin``. Removing contacts only narrows: it is done at once,
  by the same people, and audited.
* Lowering a classification (top-secret -> secret/internal, secret -> internal) or
  changing the custodian is a ``reclassify`` request whose chain includes the
  current custodian (and, for top-secret, the customer-service manager). Raising
  a classification narrows access and is done at once, but a secret or top-secret
  archive always has a custodian: an information officer or the information
  supervisor who is not the owner.

The final signature applies the change (``apply_reassign``/``apply_reclassify``)
after checking the archive still is as the request saw it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from audit.events import AuditAction, AuditEvent
from policies.changes import (
    actor_of,
    audits_refusals,
    check_reader,
    file_change,
    person,
    stale,
)
from policies.decision import Principal
from policies.desk import Desk
from policies.errors import InvalidInput, NotFound, Refused
from policies.models import AccessRequest, Notification
from policies.roles import RANK, Action, NotificationEvent, RequestKind, Role
from vault.models import Archive, ArchiveContact, ArchiveStatus

CUSTODIAN_ROLES = frozenset({Role.INFORMATION_OFFICER, Role.INFO_SUPERVISOR})


@dataclass(frozen=True, slots=True)
class ChangeOutcome:
    """Either a filed request (the change waits for signatures) or a change made now."""

    request: AccessRequest | None = None
    applied: dict[str, Any] | None = None


def _archive(session: Session, archive_no: str) -> Archive:
    query = select(Archive).where(Archive.archive_no == archive_no)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    archive = session.exec(query).first()
    if archive is None:
        raise NotFound(f"no archive {archive_no}")
    if archive.status != ArchiveStatus.ACTIVE:
        raise InvalidInput(f"archive {archive_no} was destroyed")
    return archive


def _contacts(session: Session, archive: Archive) -> list[str]:
    return sorted(
        session.exec(
            select(ArchiveContact.username).where(ArchiveContact.archive_id == archive.id)
        ).all()
    )


def _set_contacts(session: Session, archive: Archive, names: list[str]) -> None:
    archive_id = archive.id
    assert archive_id is not None  # read from the database by ``_archive``
    session.execute(sa.delete(ArchiveContact).where(col(ArchiveContact.archive_id) == archive_id))
    session.add_all(ArchiveContact(archive_id=archive_id, username=n) for n in names)
    session.flush()


def _no_admin(filer: Principal, what: str) -> None:
    if Role.ADMIN in filer.roles:
        raise Refused(
            f"administrators never {what}; the archive's department head or an "
            "information officer files it",
            rule="admin",
        )


# -- reassignment and contacts ----------------------------------------------------------


@audits_refusals(AuditAction.REASSIGN, who="filer", archive="archive_no")
def reassign(
    desk: Desk,
    session: Session,
    filer: Principal,
    *,
    archive_no: str,
    owner: str | None,
    contacts: list[str] | None,
    reason: str,
    now: datetime,
) -> ChangeOutcome:
    """A new owner or added contacts file a request; removing contacts is done now."""
    _no_admin(filer, "change who owns an archive or is listed on it")
    officer = Role.INFORMATION_OFFICER in filer.roles
    if not (officer or Role.DEPARTMENT_HEAD in filer.roles) or not desk.may(
        filer, Action.REASSIGN, {Role.DEPARTMENT_HEAD, Role.INFORMATION_OFFICER}, now
    ):
        raise Refused(
            "an archive is reassigned by its department head or an information officer",
            rule="wrong-role",
        )
    archive = _archive(session, archive_no)
    if not officer and filer.department != archive.department:
        raise Refused(
            f"a department head reassigns only their own department's archives; "
            f"{archive_no} belongs to {archive.department or 'no department'}",
            rule="wrong-department",
        )
    current = _contacts(session, archive)
    new_owner = owner or archive.owner
    wanted = current if contacts is None else list(dict.fromkeys(contacts))
    wanted = sorted(c for c in wanted if c != new_owner)
    added = sorted(set(wanted) - set(current))
    removed = sorted(set(current) - set(wanted))
    moves = new_owner != archive.owner
    if not moves and not added and not removed:
        raise InvalidInput(f"archive {archive_no} already has that owner and those contacts")
    if moves:
        check_reader(session, new_owner, department=archive.department, what="the new owner")
        if new_owner == archive.custodian:
            raise Refused(
                f"{new_owner} is the archive's custodian; the custodian is never its owner",
                rule="custodian-owner",
            )
    for name in added:
        check_reader(session, name, department=archive.department, what="contact")
    if not moves and not added:
        _set_contacts(session, archive, wanted)
        archive.updated_at = now
        session.add(archive)
        desk.audit.append(
            session,
            AuditEvent(
                action=AuditAction.REASSIGN,
                actor=actor_of(filer),
                archives=(archive_no,),
                reason=reason,
                detail={"op": "remove-contacts", "removed": removed, "contacts": wanted},
            ),
        )
        return ChangeOutcome(applied={"removed_contacts": removed, "contacts": wanted})
    change = {
        "archive": archive_no,
        "department": archive.department,
        "owner": {"from": archive.owner, "to": new_owner},
        "contacts": {"from": current, "to": wanted},
        "added_contacts": added,
        "removed_contacts": removed,
        "subjects": sorted({*added, *([new_owner] if moves else [])}),
    }
    req = file_change(
        desk,
        session,
        filer,
        kind=RequestKind.REASSIGN,
        change=change,
        reason=reason,
        now=now,
        archives=[archive_no],
        classification=archive.classification,
        custodian=archive.custodian,
    )
    return ChangeOutcome(request=req)


def apply_reassign(
    desk: Desk, session: Session, req: AccessRequest, approver: Principal, now: datetime
) -> dict[str, Any]:
    change = req.change or {}
    archive = _archive(session, change["archive"])
    if archive.owner != change["owner"]["from"]:
        raise stale(req, f"the owner of archive {archive.archive_no}")
    if archive.classification != req.classification or archive.custodian != req.custodian:
        # The chain was derived from the classification and custodian at filing.
        raise stale(req, f"the classification or custodian of archive {archive.archive_no}")
    new_owner = change["owner"]["to"]
    if new_owner != archive.owner:
        check_reader(session, new_owner, department=archive.department, what="the new owner")
        if new_owner == archive.custodian:
            raise stale(req, f"the custodian of archive {archive.archive_no}")
    for name in change["added_contacts"]:
        check_reader(session, name, department=archive.department, what="contact")
    current = set(_contacts(session, archive))
    contacts = sorted(
        (current | set(change["added_contacts"])) - set(change["removed_contacts"]) - {new_owner}
    )
    previous = archive.owner
    archive.owner, archive.updated_at = new_owner, now
    session.add(archive)
    _set_contacts(session, archive, contacts)
    desk.audit.append(
        session,
        AuditEvent(
            action=AuditAction.REASSIGN,
            actor=actor_of(approver),
            archives=(archive.archive_no,),
            reason=req.reason,
            detail={
                "request": req.uid,
                "filed_by": req.requester,
                "from": previous,
                "to": new_owner,
                "contacts_added": change["added_contacts"],
                "contacts_removed": change["removed_contacts"],
            },
        ),
    )
    for name in sorted({new_owner, *change["added_contacts"]} - {previous}):
        session.add(
            Notification(
                recipient=name,
                request_uid=req.uid,
                event=NotificationEvent.REASSIGNED.value,
                message=f"archive {archive.archive_no} is now yours to serve (request {req.uid})",
                created_at=now,
            )
        )
    return {"owner": new_owner, "contacts": contacts}


# -- classification and custodian -----------------------------------------------------


def _check_custodian(session: Session, username: str, archive: Archive) -> None:
    check_custodian(session, username, owner=archive.owner)


def check_custodian(session: Session, username: str, *, owner: str) -> None:
    """``username`` may keep an archive owned by ``owner``: an enabled information officer
    or the information supervisor, not a visitor, never (ever) an administrator and never
    the owner. Raising a classification, changing the custodian and filing an archive
    all ask this."""
    user, roles = person(session, username)
    if user.ever_admin or Role.ADMIN in roles:
        raise Refused(
            f"custodian {username} holds or has held the admin role; administrators "
            "never keep archives",
            rule="ever-admin",
        )
    if user.disabled:
        raise InvalidInput(f"custodian {username} is disabled")
    if not CUSTODIAN_ROLES & roles or user.external:
        raise InvalidInput(
            f"custodian {username} is not an information officer or the information "
            "supervisor; only they keep secret and top-secret archives"
        )
    if username == owner:
        raise InvalidInput(f"custodian {username} owns the archive; the custodian never does")


@audits_refusals(AuditAction.RECLASSIFY, who="filer", archive="archive_no")
def reclassify(
    desk: Desk,
    session: Session,
    filer: Principal,
    *,
    archive_no: str,
    level: str,
    custodian: str | None,
    reason: str,
    now: datetime,
) -> ChangeOutcome:
    """Raise at once; lower or change the custodian through a request."""
    _no_admin(filer, "reclassify archives")
    if not {Role.INFORMATION_OFFICER, Role.CS_MANAGER} & filer.roles:
        raise Refused(
            "an information officer or the customer-service manager reclassifies archives",
            rule="wrong-role",
        )
    if level not in RANK:
        raise InvalidInput("classification must be one of internal, secret, top_secret")
    archive = _archive(session, archive_no)
    old_level, old_custodian = archive.classification, archive.custodian
    new_custodian = custodian or old_custodian
    if custodian and custodian != old_custodian:
        _check_custodian(session, custodian, archive)
    if level != "internal" and not new_custodian:
        raise InvalidInput(
            f"a {level} archive needs a custodian (Art 22): name an information officer "
            "or the information supervisor who is not the owner"
        )
    if level == old_level and new_custodian == old_custodian:
        raise InvalidInput(f"archive {archive_no} is already {level} with that custodian")
    lowers = RANK[level] < RANK[old_level]
    keeper_changes = bool(old_custodian) and new_custodian != old_custodian
    if not lowers and not keeper_changes:
        if desk.store is None:
            raise InvalidInput("this service cannot re-seal archives")
        meta = desk.store.reclassify(
            archive_no,
            level,
            actor=actor_of(filer),
            custodian=custodian,
            reason=reason,
            session=session,
        )
        return ChangeOutcome(applied=meta.public())
    contacts = _contacts(session, archive)
    subjects = {*([new_custodian] if keeper_changes and new_custodian else [])}
    if lowers:
        subjects |= {archive.owner, *contacts}
    change = {
        "archive": archive_no,
        "department": archive.department,
        "classification": {"from": old_level, "to": level},
        "custodian": {"from": old_custodian, "to": new_custodian},
        "subjects": sorted(subjects),
    }
    req = file_change(
        desk,
        session,
        filer,
        kind=RequestKind.RECLASSIFY,
        change=change,
        reason=reason,
        now=now,
        archives=[archive_no],
        classification=old_level,
        custodian=old_custodian,
    )
    return ChangeOutcome(request=req)


def apply_reclassify(
    desk: Desk, session: Session, req: AccessRequest, approver: Principal, now: datetime
) -> dict[str, Any]:
    change = req.change or {}
    archive = _archive(session, change["archive"])
    if (
        archive.classification != change["classification"]["from"]
        or archive.custodian != change["custodian"]["from"]
    ):
        raise stale(req, f"the classification or custodian of archive {archive.archive_no}")
    new_custodian = change["custodian"]["to"]
    if new_custodian and new_custodian != archive.custodian:
        _check_custodian(session, new_custodian, archive)
    if desk.store is None:
        raise Refused("this service cannot re-seal archives; sign it in the API", rule="stale")
    meta = desk.store.reclassify(
        archive.archive_no,
        change["classification"]["to"],
        actor=actor_of(approver),
        custodian=new_custodian,
        reason=req.reason,
        session=session,
    )
    return {"classification": meta.classification, "custodian": meta.custodian}
