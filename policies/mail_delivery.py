"""The deliverer: sends the outbox's due mails over SMTP, after their step committed.

Run by the service's minute housekeeping and by ``archive-vault notifications
deliver``; any number of them may run at once. Each row is claimed before it is
sent by one conditional UPDATE (``queued`` and due, or ``sending`` for longer than
``RECLAIM_AFTER``) in its own short transaction, so two deliverers never both send
a row; a deliverer that died mid-send leaves its row to be taken over later (that
mail may then arrive twice, never not at all).

A failure is recorded on the row (the kind of failure only, never a server's
reply, which may echo an address or a password) and the row is tried again after
a growing pause; after ``smtp_max_attempts`` it is marked ``failed``. A relay
that cannot be reached ends the run after one attempt, so the rest are not each
held for a timeout. Nothing here raises into the workflow: a relay that is down
delays mail, nothing else.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import sqlalchemy as sa

from foundation.settings import Settings
from policies.models import NotificationMail
from policies.notifications import MailState

BACKOFF = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=12),
    timedelta(hours=24),
)
RECLAIM_AFTER = timedelta(minutes=15)  # far beyond one send's timeout
BATCH = 50  # rows per run: the rest wait for the next minute
_T = NotificationMail.__table__  # type: ignore[attr-defined]
log = logging.getLogger("archive_vault.mail")


@dataclass
class DeliveryResult:
    sent: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def backoff(attempts: int) -> timedelta:
    """The pause after the ``attempts``-th failed attempt (1 min, 5, 30, 2 h, 12 h, daily)."""
    return BACKOFF[min(max(attempts, 1), len(BACKOFF)) - 1]


def _due(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(
        sa.and_(_T.c.state == MailState.QUEUED.value, _T.c.next_attempt_at <= now),
        sa.and_(_T.c.state == MailState.SENDING.value, _T.c.claimed_at <= now - RECLAIM_AFTER),
    )


def claim(engine: sa.Engine, row_id: int, now: datetime) -> dict[str, object] | None:
    """Take one due row for this deliverer, or None when another took it first."""
    with engine.begin() as conn:
        result = conn.execute(
            sa.update(_T)
            .where(_T.c.id == row_id, _due(now))
            .values(state=MailState.SENDING.value, claimed_at=now, attempts=_T.c.attempts + 1)
        )
        if result.rowcount != 1:
            return None
        row = conn.execute(sa.select(_T).where(_T.c.id == row_id)).mappings().one()
        return dict(row)


def deliver_due(
    engine: sa.Engine, settings: Settings, now: datetime, *, limit: int = BATCH
) -> DeliveryResult:
    """Send the mails due at ``now``; never raises (failures are recorded and retried)."""
    result = DeliveryResult()
    if not settings.mail_enabled:
        return result
    try:
        with engine.connect() as conn:
            ids = list(
                conn.execute(
                    sa.select(_T.c.id).where(_due(now)).order_by(_T.c.next_attempt_at).limit(limit)
                ).scalars()
            )
        for row_id in ids:
            row = claim(engine, row_id, now)
            if row is None:
                continue
            if not _attempt(engine, settings, row, now, result):
                break  # the relay is unreachable: the rest wait for the next run
    except Exception as exc:  # noqa: BLE001 - the database is down: next run tries again
        log.error("mail delivery stopped: %s", type(exc).__name__)
    return result


def _attempt(
    engine: sa.Engine,
    settings: Settings,
    row: dict[str, object],
    now: datetime,
    result: DeliveryResult,
) -> bool:
    """Send one claimed row and record the outcome; False when the relay did not answer."""
    row_id = int(str(row["id"]))
    attempts = int(str(row["attempts"]))
    # Only while the claim is still ours (not taken over after RECLAIM_AFTER).
    mine = sa.and_(_T.c.id == row_id, _T.c.state == MailState.SENDING.value, _T.c.claimed_at == now)
    try:
        send(settings, str(row["address"]), str(row["subject"]), str(row["body"]), now)
    except Exception as exc:  # noqa: BLE001 - any failure is recorded and retried
        error = describe(exc)
        given_up = attempts >= settings.smtp_max_attempts
        with engine.begin() as conn:
            conn.execute(
                sa.update(_T)
                .where(mine)
                .values(
                    state=MailState.FAILED.value if given_up else MailState.QUEUED.value,
                    next_attempt_at=now + backoff(attempts),
                    last_error=error,
                )
            )
        (result.failed if given_up else result.retried).append(row_id)
        log.warning("mail %s attempt %s failed: %s", row_id, attempts, error)
        return answered(exc)
    with engine.begin() as conn:
        conn.execute(
            sa.update(_T)
            .where(mine)
            .values(state=MailState.SENT.value, sent_at=now, last_error=None)
        )
    result.sent.append(row_id)
    return True


def answered(exc: BaseException) -> bool:
    """Whether the relay answered (refused this mail) rather than could not be reached.

    One unreachable relay is enough to stop a run: waiting out a timeout for each
    queued row would hold up the service's housekeeping for minutes.
    """
    return isinstance(exc, smtplib.SMTPResponseException | smtplib.SMTPRecipientsRefused)


def describe(exc: BaseException) -> str:
    """What kind of failure, in a few words: the reply code, never the reply's text."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"SMTP {exc.smtp_code} ({type(exc).__name__})"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = sorted({code for code, _msg in exc.recipients.values()})
        return f"recipient refused (SMTP {', '.join(str(c) for c in codes)})"
    return type(exc).__name__[:100]


def message(
    settings: Settings, address: str, subject: str, body: str, now: datetime
) -> EmailMessage:
    """The mail; ``EmailMessage`` refuses a header with a line break (no injection)."""
    msg = EmailMessage()
    msg["From"] = settings.smtp_sender
    msg["To"] = address
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=settings.smtp_sender.rsplit("@", 1)[-1])
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(body)
    return msg


def send(settings: Settings, address: str, subject: str, body: str, now: datetime) -> None:
    """One mail over SMTP, with TLS as configured (certificates checked)."""
    msg = message(settings, address, subject, body, now)
    host, port, timeout = settings.smtp_host, settings.smtp_port, settings.smtp_timeout_seconds
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if settings.smtp_tls == "tls":
        smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
    else:
        smtp = smtplib.SMTP(host, port, timeout=timeout)
    with smtp:
        if settings.smtp_tls == "starttls":
            smtp.starttls(context=context)
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
        smtp.send_message(msg)
