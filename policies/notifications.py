"""Notifications: one service, two channels (in the vault, and by mail).

Every notice is a row of ``policy_notification`` that its recipient reads in the
vault. When mail is on (``smtp_host`` set) and the recipient has an address, the
same transaction writes the notice's mail to the outbox (``notification_mail``):
a step that rolls back mails nothing, and the mail is sent after commit by the
deliverer (``policies.mail_delivery``), so a slow or failing relay never holds
up or breaks a decision.

The in-app message may carry what a person typed (a denial reason, a material's
name), so a mail is never made from it: its subject and body are built from the
notice's structured fields only (event, request and loan ids, archive numbers,
usernames, a due time) and a link into the vault, where the rest is read after
logging in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from audit.events import SYSTEM, Actor, AuditAction, AuditEvent, AuditSink
from foundation.addresses import check_email
from foundation.clock import utcnow
from foundation.settings import Settings
from policies.errors import InvalidInput, NotFound
from policies.models import Notification, NotificationMail
from policies.roles import NotificationEvent, Role
from vault.models import User, UserRole

# Who notify_role tells for the domain's standing duties: the keepers of the loan
# register (Art 19.5), and the handlers of a leak report (DOMAIN.md: both at once).
REGISTER_KEEPERS = (Role.INFORMATION_OFFICER,)
LEAK_HANDLERS = (Role.INFO_SUPERVISOR, Role.CS_MANAGER)
MAX_MESSAGE = 1000
# Ids are a 32-bit integer column on PostgreSQL: a larger one names no row.
MAX_ID = 2**31 - 1
MAX_PAGE = 200
MAX_OFFSET = 1_000_000


class MailState(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Notice:
    """What a notification is about, in fields that carry no customer content."""

    event: str
    request_uid: str | None = None
    loan_uid: str | None = None
    case_uid: str | None = None
    archives: tuple[str, ...] = ()
    # A username the notice names (the borrower, for the register keepers).
    about: str | None = None
    due_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class MailOptions:
    """Whether notices are mailed, and the base of the links in them."""

    enabled: bool = False
    public_url: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> MailOptions:
        return cls(enabled=settings.mail_enabled, public_url=settings.public_url)


# What each event says in a mail; {r} request, {l} loan, {a} archives, {u} username,
# {d} due time. Nothing typed by a person is ever put in.
_SUBJECTS: dict[str, str] = {
    NotificationEvent.FILED: "Request {r} was filed",
    NotificationEvent.STAGE_APPROVED: "Request {r} was signed at one stage",
    NotificationEvent.APPROVED: "Request {r} was approved",
    NotificationEvent.DENIED: "Request {r} was denied",
    NotificationEvent.WITHDRAWN: "Request {r} was withdrawn",
    NotificationEvent.EXPIRED: "Request {r} expired without a decision",
    NotificationEvent.GRANT_EXPIRED: "The access granted by request {r} ended",
    NotificationEvent.LOAN_CONFIRMED: "Loan {l} confirmed",
    NotificationEvent.RETURNED: "Loan {l} was returned",
    NotificationEvent.OVERDUE: "Loan {l} is overdue",
    NotificationEvent.LOAN_DUE: "Loan {l} is due within a day",
    NotificationEvent.REASSIGNED: "Archives were handed to you",
    NotificationEvent.REVOKED: "Access under request {r} was revoked",
    NotificationEvent.RECHAINED: "The signers of request {r} changed",
    NotificationEvent.STAGE_WAITING: "Request {r} waits for your signature",
    NotificationEvent.LEAK_REPORTED: "Leak case {c} was opened: act at once",
    NotificationEvent.LEAK_CHANGED: "Leak case {c} changed",
}
_BODIES: dict[str, str] = {
    NotificationEvent.STAGE_APPROVED: (
        "Request {r} was signed at one stage. Open it to see who signs next."
    ),
    NotificationEvent.DENIED: "Request {r} was denied. Open it to read the reason.",
    NotificationEvent.EXPIRED: (
        "Request {r} expired without a decision. File a new one if you still need access."
    ),
    NotificationEvent.OVERDUE: (
        "Loan {l} of archive(s) {a} (borrower {u}) was due at {d} and is still out. "
        "The material is to be returned to an information officer."
    ),
    NotificationEvent.LOAN_DUE: (
        "Loan {l} of archive(s) {a} (borrower {u}) is due at {d}. "
        "The material is to be returned to an information officer by then."
    ),
    NotificationEvent.REASSIGNED: "Archives were handed to you. Open the vault to see which.",
    NotificationEvent.STAGE_WAITING: (
        "Request {r} has reached a stage you may sign. Open it to read the facts and "
        "approve or deny it."
    ),
    NotificationEvent.RECHAINED: (
        "The archives of request {r} changed while it waited, and so did who signs it. "
        "Open it to see the new chain."
    ),
}
_GENERIC_SUBJECT = "News in the archive vault ({e})"
_GENERIC_BODY = "There is news for you in the archive vault ({e}). Open it to read more."


def link_path(notice: Notice) -> str:
    if notice.request_uid:
        return f"/requests/{notice.request_uid}"
    if notice.loan_uid:
        return "/loans"
    if notice.case_uid:
        return f"/leaks/{notice.case_uid}"
    return "/notifications"


def compose(notice: Notice, public_url: str) -> tuple[str, str]:
    """The subject and body of a notice's mail, from its structured fields only."""
    values = {
        "e": notice.event,
        "r": notice.request_uid or "",
        "l": notice.loan_uid or "",
        "c": notice.case_uid or "",
        "a": ", ".join(notice.archives) or "-",
        "u": notice.about or "-",
        "d": notice.due_at.isoformat(timespec="minutes") if notice.due_at else "-",
    }
    subject = _SUBJECTS.get(notice.event, _GENERIC_SUBJECT)
    line = _BODIES.get(notice.event) or (subject + ".")
    if not _fits(subject, notice) or not _fits(line, notice):
        subject, line = _GENERIC_SUBJECT, _GENERIC_BODY
    link = (public_url or "") + link_path(notice)
    where = "Open" if public_url else "Open this page of the archive vault:"
    body = (
        f"{line.format(**values)}\n\n{where} {link}\n\n"
        "This message says only what happened; the details are in the vault after you "
        "log in. It was sent automatically: do not reply.\n"
    )
    return subject.format(**values)[:200], body[:4000]


def _fits(template: str, notice: Notice) -> bool:
    """Whether the notice has the ids the template names (else the generic text)."""
    return not (
        ("{r}" in template and not notice.request_uid)
        or ("{l}" in template and not notice.loan_uid)
        or ("{c}" in template and not notice.case_uid)
    )


class Notifier:
    """Writes notices for both channels, in the caller's transaction."""

    def __init__(self, mail: MailOptions | None = None) -> None:
        self.mail = mail or MailOptions()

    def notify(
        self, session: Session, recipient: str, notice: Notice, message: str, now: datetime
    ) -> Notification:
        note = Notification(
            recipient=recipient,
            request_uid=notice.request_uid,
            event=str(notice.event),
            message=message[:MAX_MESSAGE],
            created_at=now,
        )
        session.add(note)
        if not self.mail.enabled:
            return note
        session.flush()  # the outbox row names the notification
        assert note.id is not None
        address = session.exec(
            select(User.email).where(User.username == recipient, User.disabled == False)  # noqa: E712
        ).first()
        if address:
            subject, body = compose(notice, self.mail.public_url)
            session.add(
                NotificationMail(
                    notification_id=note.id,
                    recipient=recipient,
                    address=address,
                    subject=subject,
                    body=body,
                    next_attempt_at=now,
                    state=MailState.QUEUED.value,
                    created_at=now,
                )
            )
        return note

    def notify_role(
        self,
        session: Session,
        roles: Iterable[Role | str],
        notice: Notice,
        message: str,
        now: datetime,
        *,
        department: str | None = None,
        exclude: Iterable[str] = (),
    ) -> list[str]:
        """Tell every enabled holder of one of ``roles`` (of ``department`` when given).

        For the keepers of the loan register (information officers) and the
        handlers of leak reports (information supervisor, customer-service
        manager). Returns who was told, in name order.
        """
        names = holders(session, roles, department=department)
        skip = set(exclude)
        told = [n for n in names if n not in skip]
        for name in told:
            self.notify(session, name, notice, message, now)
        return told


def holders(
    session: Session, roles: Iterable[Role | str], *, department: str | None = None
) -> list[str]:
    """Enabled usernames holding any of ``roles``, in name order."""
    wanted = sorted({str(r) for r in roles})
    if not wanted:
        return []
    query = (
        select(User.username)
        .join(UserRole, col(UserRole.user_id) == col(User.id))
        .where(col(UserRole.role).in_(wanted), User.disabled == False)  # noqa: E712
    )
    if department is not None:
        query = query.where(User.department == department)
    return sorted(set(session.exec(query).all()))


# -- the in-app channel: a person's own notifications -----------------------------------


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a person's notifications; ``unread`` counts all of theirs unread."""

    items: list[Notification]
    unread: int
    limit: int
    offset: int
    total: int
    more: bool


def page_for(
    session: Session, username: str, *, unread_only: bool = False, limit: int = 50, offset: int = 0
) -> Page:
    """``username``'s notifications, newest first (only theirs, ever)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}")
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidInput(f"offset must be between 0 and {MAX_OFFSET}")
    mine = Notification.recipient == username
    query = select(Notification).where(mine)
    counted = select(func.count()).select_from(Notification).where(mine)
    if unread_only:
        query = query.where(col(Notification.read_at).is_(None))
        counted = counted.where(col(Notification.read_at).is_(None))
    items = list(
        session.exec(query.order_by(col(Notification.id).desc()).offset(offset).limit(limit)).all()
    )
    total = int(session.exec(counted).one())
    unread = int(
        session.exec(
            select(func.count())
            .select_from(Notification)
            .where(mine, col(Notification.read_at).is_(None))
        ).one()
    )
    return Page(items, unread, limit, offset, total, offset + len(items) < total)


def mark_read(session: Session, username: str, notification_id: int, now: datetime) -> Notification:
    """Mark one of ``username``'s notifications read (again: no change).

    Someone else's id is answered exactly as an unknown one, so ids cannot be
    probed. Not audited: it changes only the caller's own inbox, no record of the
    vault, and says nothing anyone else may rely on. An id outside the column's
    32-bit range names no row; it is answered as unknown before PostgreSQL would
    refuse the comparison.
    """
    if not 1 <= notification_id <= MAX_ID:
        raise NotFound(f"no notification {notification_id} of yours")
    note = session.exec(
        select(Notification).where(
            Notification.id == notification_id, Notification.recipient == username
        )
    ).first()
    if note is None:
        raise NotFound(f"no notification {notification_id} of yours")
    if note.read_at is None:
        note.read_at = now
        session.add(note)
        session.flush()
    return note


def mark_all_read(session: Session, username: str, now: datetime) -> int:
    """Mark every unread notification of ``username`` read; how many were."""
    table = Notification.__table__  # type: ignore[attr-defined]
    result = session.connection().execute(
        sa.update(table)
        .where(table.c.recipient == username, table.c.read_at.is_(None))
        .values(read_at=now)
    )
    return int(result.rowcount or 0)


# -- where mail goes: a user's address ----------------------------------------------------


def set_email(
    session: Session,
    username: str,
    email: str | None,
    *,
    audit: AuditSink,
    actor: Actor = SYSTEM,
    now: datetime | None = None,
) -> User:
    """Set (or with None clear) the address a user's notifications are mailed to.

    Whoever sets an address receives that person's notices, and a loan notice names
    archives and borrowers: a person sets their own (``PUT /me/email``). When anyone
    else sets or clears it (an administrator clearing it, the operator's CLI), the
    holder is told in the vault, never by mail (the new address may be the one who
    changed it). Audited as a change of the user, saying only whether an address is
    now set (the address itself stays out of the log and the notice).
    """
    user = session.exec(select(User).where(User.username == username)).first()
    if user is None:
        raise NotFound(f"no user {username!r}")
    if email is not None:
        try:
            email = check_email(email)
        except ValueError as exc:
            raise InvalidInput(f"email: {exc}") from None
    if user.email == email:
        return user
    user.email = email
    session.add(user)
    by_holder = actor.username == username
    if not by_holder:
        done = "set a new address" if email else "removed the address"
        session.add(
            Notification(
                recipient=username,
                event=NotificationEvent.EMAIL_CHANGED.value,
                message=(
                    f"{actor.username} {done} your notifications are mailed to. If you "
                    "did not ask for this, tell the information supervisor; you set your "
                    "own address at PUT /me/email."
                )[:MAX_MESSAGE],
                created_at=now or utcnow(),
            )
        )
    session.flush()
    audit.append(
        session,
        AuditEvent(
            action=AuditAction.USER_CHANGE,
            actor=actor,
            detail={
                "op": "set_email",
                "user": username,
                "email": "set" if email else "cleared",
                "by_holder": by_holder,
            },
        ),
    )
    return user


def outbox(session: Session, *, states: Sequence[str] | None = None) -> list[NotificationMail]:
    """The outbox rows, oldest first (for operators and tests)."""
    query = select(NotificationMail).order_by(col(NotificationMail.id))
    if states:
        query = query.where(col(NotificationMail.state).in_(list(states)))
    return list(session.exec(query).all())
