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
(``StaffHandover.move``), in that one transaction. The leaver's open loans
stay on the register in the leaver's name until the material is returned.

The successor is an enabled salesperson of the leaver's department, never a
visitor and never an account that holds or held ``admin``: checked when filed
and again when applied. A leaver who owns and is listed on nothing (an
information officer, say) needs none.

A leaver who keeps archives as their custodian (Art 22) names a successor
custodian for each (``custodians``, or one ``custodian_to`` for all); the
handover is refused when filed if any is missing or would break the custodian
rule (``policies.custodians``), and the final signature replaces them before the
leaver is disabled. Nor may a moved archive end with its new owner as its
custodian. Those archives weigh on the chain as a custodian change does: their
classification counts, and as their current custodian is the one leaving, the
custodian stage falls to its alternate. When it applies, each archive moved gets
a line on the call list (``policies.handover_calls``): the new owner tells the
customer (篇七).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from audit.events import AuditAction, AuditEvent
from policies.changes import audits_refusals, check_reader, file_change, stale
from policies.custodians import custodian_problem, kept_by
from policies.decision import Principal
from policies.desk import Desk, actor_of
from policies.directory import disable_user, load_principal
from policies.errors import InvalidInput, NotFound, Refused
from policies.handover_calls import open_calls
from policies.models import AccessRequest, LoanEntry
from policies.revocation import revoke_grants, withdraw_requests
from policies.roles import (
    Action,
    LoanState,
    NotificationEvent,
    RequestKind,
    Role,
    rank,
)
from vault.models import Archive, ArchiveContact, ArchiveStatus, User

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
        listed_q = listed_q.with_for_update(of=Archive)
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
        key=lambda c: rank(c, unknown=99),
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


@dataclass(frozen=True, slots=True)
class _After:
    """An archive as it will be once the handover applies (owner and contacts)."""

    owner: str
    contacts: tuple[str, ...]


def _kept(session: Session, username: str) -> dict[str, list[str | None]]:
    return {a.archive_no: [a.classification, a.department] for a in kept_by(session, username)}


def _successors(
    session: Session,
    leaver: str,
    to_user: str | None,
    held: dict[str, Holdings],
    custodians: Mapping[str, str],
    custodian_to: str | None,
) -> dict[str, str]:
    """Who keeps each archive the leaver keeps; refuses a missing or invalid successor."""
    kept = kept_by(session, leaver)
    numbers = {a.archive_no for a in kept}
    unknown = sorted(set(custodians) - numbers)
    if unknown:
        raise InvalidInput(
            f"custodians: {leaver} is not the custodian of archive(s) {', '.join(unknown[:20])}"
        )
    chosen = {a.archive_no: custodians.get(a.archive_no) or custodian_to for a in kept}
    missing = sorted(no for no, who in chosen.items() if not who)
    if missing:
        raise InvalidInput(
            f"{leaver} is the custodian of archive(s) {', '.join(missing[:20])}"
            f"{' …' if len(missing) > 20 else ''}; name a successor custodian for each "
            "(custodians: {archive: successor}, or custodian_to for all) (Art 22)"
        )
    out: dict[str, str] = {}
    problems: list[str] = []
    for archive in kept:
        successor = str(chosen[archive.archive_no])
        contacts = [
            to_user if c == leaver and to_user else c
            for c in session.exec(
                select(ArchiveContact.username).where(ArchiveContact.archive_id == archive.id)
            ).all()
        ]
        owner = to_user if archive.archive_no in held["owned"] and to_user else archive.owner
        problem = (
            f"custodian {successor} is the one leaving"
            if successor == leaver
            else custodian_problem(session, _After(owner, tuple(contacts)), successor)
        )
        if problem is not None:
            problems.append(f"{archive.archive_no}: {problem}")
        out[archive.archive_no] = successor
    if problems:
        raise InvalidInput("; ".join(problems[:10]))
    return out


def _not_own_custodian(held: dict[str, Holdings], to_user: str | None) -> None:
    """The successor would own (or be listed on) an archive they keep: refused."""
    clash = sorted(
        no for no, m in {**held["owned"], **held["listed"]}.items() if to_user and m[1] == to_user
    )
    if clash:
        raise InvalidInput(
            f"{to_user} is the custodian of archive(s) {', '.join(clash[:20])}, which they "
            "would own or be listed on; the custodian never is (Art 22): change the "
            "custodian first (POST /customers/{no}/custodian)"
        )


@dataclass
class HandoverResult:
    from_user: str
    to_user: str
    archives: list[str] = field(default_factory=list)
    listed_on: list[str] = field(default_factory=list)
    # The leaver's open loans: not handed over (a loan is approved for its borrower).
    # Their grants are revoked; the register lines stay open until the material is
    # returned to an information officer.
    loans_to_return: list[str] = field(default_factory=list)
    revoked_grants: list[str] = field(default_factory=list)
    withdrawn_requests: list[str] = field(default_factory=list)
    # Archives the leaver kept as custodian (Art 22), each with its successor.
    custodians: dict[str, str] = field(default_factory=dict)
    # Any the leaver still keeps afterwards (none: the handover names a successor
    # for each, or is refused when filed).
    custodian_of: list[str] = field(default_factory=list)
    # The call list opened for the moved archives (ids of ``handover_call`` lines).
    calls: list[int] = field(default_factory=list)


class StaffHandover:
    """Files a leaver's handover, applies it at the final signature, moves the clients."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    @audits_refusals(AuditAction.REASSIGN, who="actor")
    def file(
        self,
        session: Session,
        *,
        from_user: str,
        to_user: str | None,
        actor: Principal,
        now: datetime,
        reason: str = "",
        custodians: Mapping[str, str] | None = None,
        custodian_to: str | None = None,
    ) -> AccessRequest:
        """File a leaver's handover; another person's signature applies it (:meth:`apply`)."""
        leaver = session.exec(select(User).where(User.username == from_user)).first()
        if leaver is None:
            raise NotFound(f"no user {from_user!r}")
        if from_user == to_user:
            raise InvalidInput("hand over to someone else")
        allowed = {Role.DEPARTMENT_HEAD, Role.ADMIN} & actor.roles
        if not allowed or not self.desk.may(actor, Action.HANDOVER, allowed, now):
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
        held = holdings(session, from_user)
        moved = sorted({*held["owned"], *held["listed"]})
        if to_user is not None:
            check_reader(session, to_user, department=leaver.department, what="the successor")
        elif moved:
            raise InvalidInput(
                f"{from_user} owns or is listed on {len(moved)} archive(s): name a successor "
                "(to), a salesperson of the same department"
            )
        _not_own_custodian(held, to_user)
        successors = _successors(session, from_user, to_user, held, custodians or {}, custodian_to)
        kept = _kept(session, from_user)
        classification, custodian = _chain_inputs(held, leaver.department)
        # The archives the leaver keeps change custodian: their level counts, and the
        # custodian stage (the keeper is the one leaving) falls to its alternate.
        classification = max(
            [classification, *(str(m[0]) for m in kept.values())],
            key=lambda c: rank(c, unknown=99),
        )
        change = {
            "from": from_user,
            "to": to_user,
            "department": leaver.department,
            "archives": sorted(held["owned"]),
            "listed_on": sorted(held["listed"]),
            # What the chain was resolved from; the final signature compares it with now.
            "owned": held["owned"],
            "listed": held["listed"],
            "kept": kept,
            "custodians": successors,
            "subjects": sorted({*([to_user] if to_user else []), *successors.values()}),
            # The leaver signs nothing of their own handover, even as an officer.
            "parties": [from_user],
        }
        return file_change(
            self.desk,
            session,
            actor,
            kind=RequestKind.HANDOVER,
            change=change,
            reason=reason
            or f"staff change: {from_user} leaves; {to_user or 'nobody'} takes over (篇七)",
            now=now,
            archives=moved,
            classification=classification,
            custodian=custodian,
        )

    def apply(
        self, session: Session, req: AccessRequest, approver: Principal, now: datetime
    ) -> dict[str, Any]:
        """The final signature of a handover request: check it is not stale, then move."""
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
        if _kept(session, leaver.username) != change.get("kept", {}):
            raise stale(req, f"the archives {change['from']} keeps as custodian")
        to_user = change["to"]
        if to_user is not None:
            check_reader(session, to_user, department=leaver.department, what="the successor")
        try:
            _not_own_custodian(now_held, to_user)
            successors = _successors(
                session, leaver.username, to_user, now_held, change.get("custodians", {}), None
            )
        except InvalidInput as exc:
            raise stale(req, f"the custodian rule (Art 22) for these archives: {exc}") from None
        result = self.move(
            session,
            from_user=change["from"],
            to_user=to_user,
            actor=approver,
            now=now,
            archives=change["archives"],
            listed_on=change["listed_on"],
            custodians=successors,
        )
        if to_user is not None and result.archives:
            department = session.exec(select(User.department).where(User.username == to_user)).one()
            result.calls = [
                c.id or 0
                for c in open_calls(
                    session,
                    request_uid=req.uid,
                    leaver=change["from"],
                    new_owner=to_user,
                    department=department,
                    archives=result.archives,
                    now=now,
                )
            ]
        if result.loans_to_return:
            self.desk.notify(
                session,
                req.requester,
                req.uid,
                NotificationEvent.REASSIGNED,
                f"handover {req.uid} applied; {change['from']}'s open loan(s) "
                f"{', '.join(result.loans_to_return)} were not handed over: their access "
                "ended, and the material must be returned to an information officer",
                now,
            )
        return asdict(result)

    def move(
        self,
        session: Session,
        *,
        from_user: str,
        to_user: str | None,
        actor: Principal,
        now: datetime,
        archives: Sequence[str],
        listed_on: Sequence[str],
        custodians: Mapping[str, str] | None = None,
    ) -> HandoverResult:
        """Give the recorded archives and contact listings of a leaver to another
        salesperson, revoke all the leaver's grants (loans' too: the open loans stay
        on the register in the leaver's name until returned), withdraw their pending
        requests, and disable them, in the caller's one transaction. Called only by
        the final signature of a handover request, which checked who filed, who signs,
        the successor, and that the leaver still holds exactly ``archives`` and
        ``listed_on`` as recorded when it was filed."""
        if to_user is not None:
            successor = load_principal(session, to_user)  # refuses disabled users
            if Role.SALESPERSON not in successor.roles:
                raise InvalidInput(f"{to_user} is not a salesperson")
        elif archives or listed_on:
            raise InvalidInput(f"{from_user}'s archives need a successor")
        new_owner = to_user or ""  # no archives move without a successor (checked above)
        result = HandoverResult(from_user=from_user, to_user=new_owner)
        for kept in session.exec(
            select(Archive)
            .where(
                Archive.custodian == from_user,
                col(Archive.archive_no).in_(list(custodians or {})),
            )
            .with_for_update()
        ).all():
            kept.custodian = (custodians or {})[kept.archive_no]
            kept.updated_at = now
            session.add(kept)
            result.custodians[kept.archive_no] = kept.custodian
        session.flush()
        result.custodian_of = list(
            session.exec(
                select(Archive.archive_no).where(
                    Archive.custodian == from_user, Archive.status == ArchiveStatus.ACTIVE
                )
            ).all()
        )
        for archive in session.exec(
            select(Archive)
            .where(Archive.owner == from_user, col(Archive.archive_no).in_(list(archives)))
            .with_for_update()
        ).all():
            archive.owner = new_owner
            archive.updated_at = now
            session.add(archive)
            result.archives.append(archive.archive_no)
            # The new owner is not also listed as a contact (as in a reassignment).
            mine = session.get(ArchiveContact, (archive.id, new_owner))
            if mine is not None:
                session.delete(mine)
        for contact, listed in session.exec(
            select(ArchiveContact, Archive)
            .join(Archive, col(Archive.id) == col(ArchiveContact.archive_id))
            .where(
                ArchiveContact.username == from_user,
                col(Archive.archive_no).in_(list(listed_on)),
            )
        ).all():
            exists = session.get(ArchiveContact, (contact.archive_id, new_owner))
            session.delete(contact)
            if exists is None and listed.owner != new_owner:
                session.add(ArchiveContact(archive_id=contact.archive_id, username=new_owner))
            result.listed_on.append(listed.archive_no)
        session.flush()
        result.loans_to_return = sorted(
            session.exec(
                select(LoanEntry.uid).where(
                    LoanEntry.borrower == from_user, LoanEntry.state == LoanState.OUT
                )
            ).all()
        )
        result.revoked_grants = revoke_grants(session, from_user, now)
        result.withdrawn_requests = withdraw_requests(session, from_user, now, by=actor.username)
        self.desk.event(
            session,
            AuditEvent(
                action=AuditAction.REASSIGN,
                actor=actor_of(actor),
                archives=(*result.archives, *result.listed_on),
                reason="staff change: the responsible employee left",
                detail={
                    "from": from_user,
                    "to": to_user,
                    "listed_on": result.listed_on,
                    "loans_to_return": result.loans_to_return,
                    "revoked_grants": result.revoked_grants,
                    "withdrawn_requests": result.withdrawn_requests,
                    "custodians": result.custodians,
                    "custodian_of": result.custodian_of,
                },
            ),
        )
        disable_user(session, from_user, audit=self.desk.audit, actor=actor_of(actor))
        for archive_no, keeper in sorted(result.custodians.items()):
            self.desk.notify(
                session,
                keeper,
                None,
                NotificationEvent.REASSIGNED,
                f"you are now the custodian of archive {archive_no} (Art 22), after {from_user}",
                now,
            )
        if to_user is None:
            return result
        self.desk.notify(
            session,
            to_user,
            None,
            NotificationEvent.REASSIGNED,
            f"{len(result.archives)} archive(s) of {from_user} are now yours and you are "
            f"listed on {len(result.listed_on)} more; tell the customers (篇七)"
            + (
                f". {from_user}'s open loan(s) {', '.join(result.loans_to_return)} are not "
                "yours: their access ended and the material must be returned to an "
                "information officer"
                if result.loans_to_return
                else ""
            ),
            now,
        )
        return result
