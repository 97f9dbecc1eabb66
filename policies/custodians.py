"""Art 22: a secret or top-secret archive is kept by a named custodian, never loosely.

The custodian signs every access to a top-secret archive, so who may be one is a
rule of its own, asked the same way wherever a custodian is named or kept:
raising a classification, changing the custodian, filing or importing an archive,
a leaver's handover, and the ``custodians`` report that finds old archives that
break it. A custodian is an enabled information officer or the information
supervisor of the company (never a visitor, never an account that holds or held
``admin``), and never the archive's owner or one of its listed contacts: the
keeper who signs an access must not be the person the access is for.

``custodian_problem`` answers in words (or ``None``) and raises nothing, so each
caller chooses its refusal: a 422 from the API, a warning from an import, a flag
in a report.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Protocol

from sqlmodel import Session, col, func, select

from audit.events import Actor, AuditAction, AuditEvent, AuditSink, Outcome
from policies.decision import Principal
from policies.errors import Conflict, Refused
from policies.models import AccessRequest
from policies.roles import CHANGE_KINDS, Role
from vault.models import Archive, ArchiveContact, ArchiveStatus, User, UserRole

CUSTODIAN_ROLES = frozenset({Role.INFORMATION_OFFICER, Role.INFO_SUPERVISOR})
KEPT_LEVELS = frozenset({"secret", "top_secret"})
ART22 = (
    "Art 22: a secret or top-secret archive is kept by an enabled information officer "
    "or the information supervisor who is neither its owner nor one of its contacts"
)


class Kept(Protocol):
    """What the rule needs of an archive: its owner (and, when known, its contacts).

    An ``Archive`` row, an ``ArchiveMeta`` and an import record all fit; a row's
    contacts are read from the database when the object carries none."""

    @property
    def owner(self) -> str: ...


def _contacts(session: Session, archive: Kept) -> Iterable[str]:
    listed = getattr(archive, "contacts", None)
    if listed is not None:
        return tuple(listed)
    archive_id = getattr(archive, "id", None)
    if archive_id is None:
        return ()
    return session.exec(
        select(ArchiveContact.username).where(ArchiveContact.archive_id == archive_id)
    ).all()


def custodian_problem(session: Session, archive_or_meta: Kept, candidate: str | None) -> str | None:
    """Why ``candidate`` may not keep ``archive_or_meta`` (Art 22), or ``None`` if they may.

    ``None`` as the candidate is a problem too: a secret or top-secret archive has a
    custodian. Whether the archive's level needs one is the caller's question."""
    found = custodian_rule(session, archive_or_meta, candidate)
    return found[1] if found else None


def custodian_rule(
    session: Session, archive_or_meta: Kept, candidate: str | None
) -> tuple[str, str] | None:
    """``custodian_problem`` with the rule it breaks, as (rule, message): ``ever-admin``
    (an administrator's account, refused like every other widening by one) or
    ``custodian`` (everything the caller can fix by naming someone else)."""
    if not candidate:
        return "custodian", f"no custodian is named ({ART22})"
    user = session.exec(select(User).where(User.username == candidate)).first()
    if user is None:
        return "custodian", f"custodian {candidate} is not a user of this vault"
    roles = frozenset(session.exec(select(UserRole.role).where(UserRole.user_id == user.id)).all())
    if user.ever_admin or Role.ADMIN in roles:
        return "ever-admin", (
            f"custodian {candidate} holds or has held the admin role; administrators never "
            "keep archives"
        )
    if user.external or Role.EXTERNAL in roles:
        return "custodian", f"custodian {candidate} is a visitor from outside the company ({ART22})"
    if user.disabled:
        return "custodian", f"custodian {candidate} is disabled ({ART22})"
    if not CUSTODIAN_ROLES & roles:
        return "custodian", (
            f"custodian {candidate} is not an information officer or the information "
            f"supervisor ({ART22})"
        )
    if candidate == archive_or_meta.owner:
        return "custodian", (
            f"custodian {candidate} owns the archive; the custodian never does ({ART22})"
        )
    if candidate in set(_contacts(session, archive_or_meta)):
        return "custodian", f"custodian {candidate} is listed on the archive as a contact ({ART22})"
    return None


def needs_custodian(level: str) -> bool:
    return level in KEPT_LEVELS


def kept_by(session: Session, username: str) -> list[Archive]:
    """The active archives ``username`` keeps as custodian, by number."""
    return list(
        session.exec(
            select(Archive)
            .where(Archive.custodian == username, Archive.status == ArchiveStatus.ACTIVE.value)
            .order_by(col(Archive.archive_no))
        ).all()
    )


def check_may_disable(session: Session, username: str) -> None:
    """A custodian is not disabled while they keep active archives: those would be left
    without a keeper. ``Conflict`` (409) names how many and how to hand them over."""
    count = session.exec(
        select(func.count())
        .select_from(Archive)
        .where(Archive.custodian == username, Archive.status == ArchiveStatus.ACTIVE.value)
    ).one()
    if count:
        raise Conflict(
            f"{username} is the custodian of {count} active archive(s); hand them to "
            f"successors first: POST /users/{username}/handover with custodians "
            f"(archive -> successor) or custodian_to, or `archive-vault custodians` to "
            "list them"
        )


def review(session: Session) -> list[tuple[Archive, str | None]]:
    """Every active secret or top-secret archive with what is wrong with its custodian
    (``None`` when nothing is): metadata only, for a vault older than the rule."""
    out: list[tuple[Archive, str | None]] = []
    for archive in session.exec(
        select(Archive)
        .where(
            col(Archive.classification).in_(sorted(KEPT_LEVELS)),
            Archive.status == ArchiveStatus.ACTIVE.value,
        )
        .order_by(col(Archive.archive_no))
    ).all():
        out.append((archive, custodian_problem(session, archive, archive.custodian)))
    return out


def lapsed_keeper(
    session: Session, req: AccessRequest, username: str, roles: Collection[str]
) -> str:
    """Why the custodian named on ``req`` no longer signs its custodian stage ('' while
    they do): they lost the role a keeper needs, or the archive has another keeper now
    (a request read before its chain is derived again, for a deny or a queue, still
    names the former one)."""
    if not CUSTODIAN_ROLES & set(roles):
        stage = req.stages[req.next_stage] if req.next_stage < len(req.stages) else {}
        instead = stage.get("alternate_label") or "another signer"
        return (
            "you no longer hold the information officer or supervisor role a "
            f"custodian needs (Art 22); {instead} signs in your place"
        )
    if req.kind in CHANGE_KINDS:
        # A change's archives are compared with the vault when it is applied (stale).
        return ""
    keepers = set(
        session.exec(
            select(Archive.custodian).where(
                col(Archive.archive_no).in_(list(req.archives)),
                Archive.classification == "top_secret",
            )
        ).all()
    )
    if keepers and keepers != {username}:
        return f"you are no longer the custodian of the archives of request {req.uid}"
    return ""


def drops_keeper_role(session: Session, username: str, roles: Iterable[str]) -> bool:
    """Whether replacing ``username``'s roles with ``roles`` takes away a role a keeper
    needs that they hold now. A role asked for in exchange is only a request until it
    is signed, so a swap (officer for supervisor) still drops the officer's role."""
    held = set(
        session.exec(
            select(UserRole.role)
            .join(User, col(User.id) == col(UserRole.user_id))
            .where(User.username == username)
        ).all()
    )
    return bool((CUSTODIAN_ROLES & held) - set(roles))


def review_for(
    session: Session, principal: Principal, *, actor: Actor, audit: AuditSink
) -> list[tuple[Archive, str | None]]:
    """``review`` for the people who keep archives (information officers and the
    supervisor), problems first; metadata only, and the look is an audit entry. Anyone
    else is refused (``Refused``, its event audited by the caller's runner)."""
    if not CUSTODIAN_ROLES & principal.roles:
        message = "only information officers and the information supervisor review custodians"
        raise Refused(
            message,
            rule="custodian-review",
            event=AuditEvent(
                action=AuditAction.LIST,
                actor=actor,
                outcome=Outcome.DENIED,
                reason=message,
                detail={"view": "custodians", "rule": "custodian-review"},
            ),
        )
    rows = review(session)
    rows.sort(key=lambda row: (row[1] is None, row[0].archive_no))
    audit.append(
        session,
        AuditEvent(
            action=AuditAction.LIST,
            actor=actor,
            detail={
                "view": "custodians",
                "count": len(rows),
                "problems": sum(problem is not None for _a, problem in rows),
            },
        ),
    )
    return rows
