"""Who owns an archive, who else is on it, how it is classified and who keeps it.

Each of these decides who can read the archive, so widening access is a request:

* Reassigning the archive or adding contacts is a ``reassign`` request, filed by
  the archive's department head (own department only) or an information officer,
  never by an administrator. The new owner and every added contact is an enabled
  salesperson of the archive's department, never a visitor and never an account
  that holds or held ``admin``. Removing contacts only narrows: it is done at once,
  by the same people, and audited.
* Lowering a classification (top-secret -> secret/internal, secret -> internal) or
  changing the custodian (``change_custodian``, or a new custodian named with a
  classification) is a ``reclassify`` request whose chain includes the current
  custodian (the information supervisor in their place when they filed it, or
  when the archive has no valid one) and, for top-secret, the customer-service
  manager. The new custodian never signs (``beneficiary``) and nobody names
  themselves (``self-appointment``). Raising a classification narrows access and
  is done at once, naming a custodian when the archive has no valid one.
  Whoever is named passes ``policies.custodians.custodian_problem`` (Art 22),
  when filed and again when applied; lowering to internal clears the custodian.

The final signature applies the change (``apply_reassign``/``apply_reclassify``)
after checking the archive still is as the request saw it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from audit.events import AuditAction, AuditEvent, Outcome
from policies.changes import (
    actor_of,
    audits_refusals,
    check_reader,
    file_change,
    stale,
)
from policies.custodians import custodian_problem, custodian_rule, needs_custodian
from policies.decision import Principal
from policies.desk import Desk
from policies.errors import InvalidInput, NotFound, Refused
from policies.models import AccessRequest
from policies.roles import RANK, Action, NotificationEvent, RequestKind, Role
from vault.models import Archive, ArchiveContact, ArchiveStatus


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
        if name == archive.custodian:
            raise Refused(
                f"{name} is the archive's custodian; the custodian is never a contact",
                rule="custodian-owner",
            )
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
        if name == archive.custodian:
            raise stale(req, f"the custodian of archive {archive.archive_no}")
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
        desk.notify(
            session,
            name,
            req.uid,
            NotificationEvent.REASSIGNED,
            f"archive {archive.archive_no} is now yours to serve (request {req.uid})",
            now,
        )
    return {"owner": new_owner, "contacts": contacts}


# -- classification and custodian -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Owned:
    owner: str
    contacts: tuple[str, ...] = ()


def check_custodian(
    session: Session, username: str, *, owner: str, contacts: tuple[str, ...] = ()
) -> None:
    """``username`` may keep an archive owned by ``owner`` (``custodian_problem``), or
    ``InvalidInput`` (422) naming why not. Filing an archive asks this."""
    _raise_rule(custodian_rule(session, _Owned(owner, contacts), username))


def _raise_rule(found: tuple[str, str] | None, prefix: str = "") -> None:
    """An administrator's account is refused (403, like every widening by one); any
    other custodian problem is the caller's to fix (422)."""
    if found is None:
        return
    rule, message = found
    if rule == "ever-admin":
        raise Refused(message, rule=rule)
    raise InvalidInput(prefix + message)


def _keeper(session: Session, archive: Archive) -> str | None:
    """The custodian who signs a change of this archive: its current one when valid;
    otherwise none, and the chain's alternate (the information supervisor) signs."""
    current = archive.custodian
    if current and custodian_problem(session, archive, current) is None:
        return current
    return None


@contextlib.contextmanager
def _invalid_audited(filer: Principal, archive_no: str) -> Iterator[None]:
    """A custodian refused for what the caller gave (422) is on record too: the refusal
    carries its denied event, appended after the rollback like a rule's refusal."""
    try:
        yield
    except InvalidInput as exc:
        if exc.event is None:
            exc.event = AuditEvent(
                action=AuditAction.RECLASSIFY,
                actor=actor_of(filer),
                outcome=Outcome.DENIED,
                archives=(archive_no,),
                reason=exc.message[:500],
                detail={"rule": "custodian"},
            )
        raise


def _no_self_appointment(filer: Principal, custodian: str | None) -> None:
    if custodian and custodian == filer.username:
        raise Refused(
            "nobody names themselves custodian: another information officer or the "
            "customer-service manager files it",
            rule="self-appointment",
        )


def _reclassifier(desk: Desk, filer: Principal, what: str) -> None:
    _no_admin(filer, what)
    if not {Role.INFORMATION_OFFICER, Role.CS_MANAGER} & filer.roles:
        raise Refused(
            f"an information officer or the customer-service manager may {what}",
            rule="wrong-role",
        )


def _file_reclassify(
    desk: Desk,
    session: Session,
    filer: Principal,
    archive: Archive,
    *,
    level: str,
    custodian: str | None,
    reason: str,
    now: datetime,
) -> AccessRequest:
    old_level, old_custodian = archive.classification, archive.custodian
    keeper_changes = custodian != old_custodian
    lowers = RANK[level] < RANK[old_level]
    subjects = {*([custodian] if keeper_changes and custodian else [])}
    if lowers:
        subjects |= {archive.owner, *_contacts(session, archive)}
    change = {
        "archive": archive.archive_no,
        "department": archive.department,
        "classification": {"from": old_level, "to": level},
        "custodian": {"from": old_custodian, "to": custodian},
        "subjects": sorted(subjects),
    }
    return file_change(
        desk,
        session,
        filer,
        kind=RequestKind.RECLASSIFY,
        change=change,
        reason=reason,
        now=now,
        archives=[archive.archive_no],
        classification=old_level,
        custodian=_keeper(session, archive),
    )


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
    """Raise at once (naming a valid custodian when the archive has none or an invalid
    one); lower, or change a valid custodian, through a request."""
    _reclassifier(desk, filer, "reclassify archives")
    if level not in RANK:
        raise InvalidInput("classification must be one of internal, secret, top_secret")
    archive = _archive(session, archive_no)
    old_level, old_custodian = archive.classification, archive.custodian
    if not needs_custodian(level):
        if custodian:
            with _invalid_audited(filer, archive_no):
                raise InvalidInput(
                    "an internal archive has no custodian; lowering it to internal clears "
                    "the custodian (Art 22)"
                )
        new_custodian = None
    else:
        new_custodian = custodian or old_custodian
        with _invalid_audited(filer, archive_no):
            _raise_rule(
                custodian_rule(session, archive, new_custodian),
                f"a {level} archive needs a valid custodian: ",
            )
    if level == old_level and new_custodian == old_custodian:
        raise InvalidInput(f"archive {archive_no} is already {level} with that custodian")
    raises = RANK[level] > RANK[old_level]
    # Nobody names themselves keeper, not even by raising at once (the raise narrows
    # access, the keeper it names decides who reads).
    if new_custodian != old_custodian:
        _no_self_appointment(filer, new_custodian)
    # Replacing a custodian who is still valid is a change the current one signs;
    # naming one where there is none (or only an invalid one) goes with the raise.
    keeper_changes = new_custodian != old_custodian and _keeper(session, archive) is not None
    if raises and not keeper_changes:
        if desk.store is None:
            raise InvalidInput("this service cannot re-seal archives")
        meta = desk.store.reclassify(
            archive_no,
            level,
            actor=actor_of(filer),
            custodian=new_custodian,
            reason=reason,
            session=session,
        )
        return ChangeOutcome(applied=meta.public())
    req = _file_reclassify(
        desk,
        session,
        filer,
        archive,
        level=level,
        custodian=new_custodian,
        reason=reason,
        now=now,
    )
    return ChangeOutcome(request=req)


@audits_refusals(AuditAction.RECLASSIFY, who="filer", archive="archive_no")
def change_custodian(
    desk: Desk,
    session: Session,
    filer: Principal,
    *,
    archive_no: str,
    custodian: str,
    reason: str,
    now: datetime,
) -> AccessRequest:
    """Name another custodian (Art 22): a ``reclassify`` request that keeps the level.

    The current custodian signs it (the information supervisor when they filed it or
    none valid is named), and the customer-service manager too for a top-secret
    archive; the new custodian never signs their own appointment."""
    _reclassifier(desk, filer, "change a custodian")
    with _invalid_audited(filer, archive_no):
        return _file_custodian(desk, session, filer, archive_no, custodian, reason, now)


def _file_custodian(
    desk: Desk,
    session: Session,
    filer: Principal,
    archive_no: str,
    custodian: str,
    reason: str,
    now: datetime,
) -> AccessRequest:
    archive = _archive(session, archive_no)
    if not needs_custodian(archive.classification):
        raise InvalidInput(
            f"archive {archive_no} is {archive.classification}: an internal archive has no "
            "custodian (raise it first: POST /customers/{no}/classification)"
        )
    if custodian == archive.custodian:
        raise InvalidInput(f"{custodian} is already the custodian of archive {archive_no}")
    _no_self_appointment(filer, custodian)
    _raise_rule(custodian_rule(session, archive, custodian))
    return _file_reclassify(
        desk,
        session,
        filer,
        archive,
        level=archive.classification,
        custodian=custodian,
        reason=reason,
        now=now,
    )


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
    level = change["classification"]["to"]
    new_custodian = change["custodian"]["to"] if needs_custodian(level) else None
    if needs_custodian(level):
        problem = custodian_problem(session, archive, new_custodian)
        if problem is not None:
            raise Refused(
                f"{problem}; request {req.uid} cannot apply: deny it and file a new one",
                rule="stale",
            )
    if level == archive.classification:
        # Only the keeper changes: nothing is re-sealed.
        previous = archive.custodian
        archive.custodian, archive.updated_at = new_custodian, now
        session.add(archive)
        desk.audit.append(
            session,
            AuditEvent(
                action=AuditAction.RECLASSIFY,
                actor=actor_of(approver),
                archives=(archive.archive_no,),
                reason=req.reason,
                detail={
                    "request": req.uid,
                    "filed_by": req.requester,
                    "op": "custodian",
                    "custodian": {"from": previous, "to": new_custodian},
                },
            ),
        )
        return {"classification": level, "custodian": new_custodian}
    if desk.store is None:
        raise Refused("this service cannot re-seal archives; sign it in the API", rule="stale")
    meta = desk.store.reclassify(
        archive.archive_no,
        level,
        actor=actor_of(approver),
        custodian=new_custodian,
        reason=req.reason,
        session=session,
    )
    return {"classification": meta.classification, "custodian": meta.custodian}
