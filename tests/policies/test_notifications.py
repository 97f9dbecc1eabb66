"""Notifications: who is told of what, in the vault and by mail, and how mail is delivered.

Mail goes to an in-process SMTP sink on 127.0.0.1 (aiosmtpd). Time is injected
(``T0``); nothing sleeps. Concurrency is exercised with two deliverers on one
database, and the claim that decides which of them sends a row.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlmodel import Session, select

from audit.events import Actor, AuditAction
from foundation.db import transaction
from foundation.settings import Settings
from policies import mail_delivery, notifications
from policies.errors import InvalidInput, NotFound
from policies.models import LoanEntry, Notification
from policies.notifications import MailOptions, Notice, Notifier, set_email
from policies.roles import NotificationEvent, Role
from tests.auditlog import entries
from tests.policies.conftest import T0
from tests.smtp_sink import Sink, StartTLSSink, free_port, self_signed
from vault.models import User

CAROL = Actor("carol", "salesperson")

M = timedelta(minutes=1)
H = timedelta(hours=1)
D = timedelta(days=1)
URL = "https://vault.example.com"
KEEPERS = ["both", "io", "io2", "keeper"]  # every enabled information officer of the cast


def _mail_settings(tmp_path: Path, port: int, **kw: object) -> Settings:
    return Settings(
        data_dir=tmp_path / "mailvar",
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_tls="none",
        smtp_sender="vault@example.com",
        public_url=URL,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def mailing(db, wf, sink):
    """Mail on, and addresses for the people the tests follow."""
    wf.notifier = Notifier(MailOptions(enabled=True, public_url=URL))
    with transaction(db) as s:
        for name in ("carol", "dan", "io", "io2", "keeper", "sup", "csm", "dh_east"):
            # each sets their own (PUT /me/email): nobody is told of it
            own = Actor(name, "salesperson")
            notifications.set_email(s, name, f"{name}@corp.example.com", audit=sink, actor=own)
    return wf


def _notes(db, recipient):
    with Session(db) as s:
        return list(
            s.exec(
                select(Notification)
                .where(Notification.recipient == recipient)
                .order_by(Notification.id)  # type: ignore[arg-type]
            ).all()
        )


def _mails(db):
    with Session(db) as s:
        return notifications.outbox(s)


def _loan(db, wf, who, *, hours=48):
    with transaction(db) as s:
        req = wf.filing.file(
            s,
            who("carol"),
            kind="loan",
            archives=["A-INT"],
            purpose="contract_follow_up",
            reason="renewal of the Hangzhou contract",
            now=T0,
            hours=hours,
            material="signed contract folder",
            copies=1,
        )
    for i, signer in enumerate(["dh_east", "io"]):
        with transaction(db) as s:
            req = wf.signing.approve(s, req.uid, who(signer), now=T0 + (i + 1) * H)
    with Session(db) as s:
        return s.exec(select(LoanEntry).where(LoanEntry.request_id == req.id)).one()


def _events(db, name, event):
    return [n for n in _notes(db, name) if n.event == event]


# -- triggers ---------------------------------------------------------------------------


def test_loan_due_within_a_day_tells_borrower_and_every_keeper_once(db, mailing, who):
    loan = _loan(db, mailing, who)
    with transaction(db) as s:
        assert mailing.sweeper.sweep(s, now=loan.due_at - 25 * H).due_loans == []
    with transaction(db) as s:
        assert mailing.sweeper.sweep(s, now=loan.due_at - 23 * H).due_loans == [loan.uid]
    with transaction(db) as s:  # a later sweep the same day, and the next: once only
        assert mailing.sweeper.sweep(s, now=loan.due_at - 2 * H).due_loans == []
    for name in ["carol", *KEEPERS]:
        assert len(_events(db, name, "loan_due")) == 1, name
    assert _events(db, "sup", "loan_due") == []  # not a keeper of the register
    keeper_note = _events(db, "io", "loan_due")[0]
    assert "carol" in keeper_note.message and loan.uid in keeper_note.message
    assert "folder" not in keeper_note.message  # the material's name is the borrower's text
    mailed = {m.recipient for m in _mails(db) if "due within a day" in m.subject}
    assert mailed == {"carol", "io", "io2", "keeper"}  # "both" has no address: in-app only
    with Session(db) as s:
        assert s.get(LoanEntry, loan.id).due_notified_at == loan.due_at - 23 * H


def test_overdue_is_told_at_once_then_daily_never_twice_a_day(db, mailing, who):
    loan = _loan(db, mailing, who)
    due = loan.due_at
    told = []
    for at in (due + M, due + 3 * H, due + 23 * H, due + D + M, due + D + 2 * H, due + 2 * D + M):
        with transaction(db) as s:
            told.append(mailing.sweeper.sweep(s, now=at).overdue_loans)
    assert told == [[loan.uid], [], [], [loan.uid], [], [loan.uid]]
    for name in ["carol", *KEEPERS]:
        assert len(_events(db, name, "overdue")) == 3, name
    with transaction(db) as s:
        mailing.loans.close(s, loan.uid, who("io"), now=due + 2 * D + H)
    with transaction(db) as s:  # returned: no more reminders
        assert mailing.sweeper.sweep(s, now=due + 4 * D).overdue_loans == []
    returned = [m for m in _mails(db) if m.subject == f"Loan {loan.uid} was returned"]
    assert [m.recipient for m in returned] == ["carol"]


def test_two_sweeps_at_once_tell_everyone_once(db, mailing, who):
    loan = _loan(db, mailing, who)
    at = loan.due_at + M
    # Both sweeps saw the loan as owed a notice; only the first claim changes the row.
    with transaction(db) as s:
        from policies.loans import loan_notices

        first = loan_notices(mailing, s, at)
    with transaction(db) as s:
        second = loan_notices(mailing, s, at + M)
    assert (first.overdue, second.overdue) == ([loan.uid], [])
    assert len(_events(db, "carol", "overdue")) == 1


def test_the_requester_is_told_of_every_decision(db, mailing, who):
    with transaction(db) as s:
        req = mailing.filing.file(
            s,
            who("dan"),
            kind="view",
            archives=["A-SEC"],
            purpose="contract_follow_up",
            reason="the customer's daughter called about her account",
            now=T0,
        )
    with transaction(db) as s:
        signed = mailing.signing.approve(s, req.uid, who("dh_sales"), now=T0 + H)
    with transaction(db) as s:
        mailing.signing.deny(
            s, req.uid, who("io"), reason="Mrs Wang's file is closed", now=T0 + 2 * H
        )
    events = [n.event for n in _notes(db, "dan")]
    assert events[:3] == ["filed", "stage_approved", "denied"]
    assert signed.state == "pending"
    denied = [m for m in _mails(db) if m.recipient == "dan" and "denied" in m.subject]
    assert len(denied) == 1
    body = denied[0].body
    assert f"{URL}/requests/{req.uid}" in body and "read the reason" in body
    for text in ("Wang", "daughter", "closed"):  # the reasons are read in the vault only
        assert text not in body and text not in denied[0].subject


def test_notify_role_tells_enabled_holders_in_the_department(db, mailing, who, sink):
    notice = Notice("leak_reported", archives=("A-SEC",))
    with transaction(db) as s:
        told = mailing.notify_role(s, notifications.LEAK_HANDLERS, notice, "leak case X-1", T0)
    assert told == ["csm", "sup"]
    with transaction(db) as s:
        told = mailing.notify_role(
            s, [Role.INFORMATION_OFFICER], notice, "x", T0, department="sales"
        )
    assert told == ["both"]
    from policies.directory import disable_user

    with transaction(db) as s:
        disable_user(s, "csm")
    with transaction(db) as s:
        told = mailing.notify_role(s, [Role.INFO_SUPERVISOR, Role.CS_MANAGER], notice, "y", T0)
    assert told == ["sup"]
    generic = next(m for m in _mails(db) if m.recipient == "sup")
    assert "leak_reported" in generic.subject and generic.body.count(f"{URL}/notifications") == 1
    assert "leak case" not in generic.body  # the in-app text is never mailed


def test_mail_off_writes_no_outbox_rows(db, wf, who, sink):
    with transaction(db) as s:
        own = Actor("carol", "salesperson")
        notifications.set_email(s, "carol", "carol@corp.example.com", audit=sink, actor=own)
        wf.notify(s, "carol", None, NotificationEvent.RETURNED, "loan returned", T0)
    assert _mails(db) == [] and len(_notes(db, "carol")) == 1


def test_a_rolled_back_step_mails_nothing(db, mailing, who, tmp_path):
    with pytest.raises(RuntimeError), transaction(db) as s:
        mailing.notify(s, "carol", "R-X", NotificationEvent.APPROVED, "approved", T0)
        assert len(notifications.outbox(s)) == 1  # written in the step's transaction
        raise RuntimeError("the step fails after notifying")
    assert _mails(db) == [] and _notes(db, "carol") == []
    with Sink() as smtp:
        result = mail_delivery.deliver_due(db, _mail_settings(tmp_path, smtp.port), T0 + D)
    assert result.sent == [] and smtp.received == []


# -- delivery ---------------------------------------------------------------------------


def test_the_sink_receives_the_mail_with_a_link_and_no_content(db, mailing, who, tmp_path):
    loan = _loan(db, mailing, who)
    with transaction(db) as s:
        mailing.sweeper.sweep(s, now=loan.due_at + M)
    with Sink() as smtp:
        result = mail_delivery.deliver_due(db, _mail_settings(tmp_path, smtp.port), loan.due_at + M)
    overdue = [m for m in smtp.received if "overdue" in str(m["Subject"])]
    assert {str(m["To"]) for m in overdue} == {
        "carol@corp.example.com",
        "io@corp.example.com",
        "io2@corp.example.com",
        "keeper@corp.example.com",
    }
    msg = overdue[0]
    body = msg.get_content()
    assert str(msg["From"]) == "vault@example.com" and loan.uid in str(msg["Subject"])
    assert f"{URL}/loans" in body and "A-INT" in body and "carol" in body
    for text in ("folder", "Hangzhou", "renewal"):
        assert text not in body
    with Session(db) as s:
        rows = notifications.outbox(s)
    assert all(r.state == "sent" and r.sent_at == loan.due_at + M for r in rows)
    assert len(result.sent) == len(rows) == len(smtp.received)


def test_a_refused_delivery_is_retried_when_due_then_delivered(db, mailing, tmp_path):
    with transaction(db) as s:
        mailing.notify(s, "carol", "R-1", NotificationEvent.APPROVED, "approved", T0)
    with Sink() as smtp:
        settings = _mail_settings(tmp_path, smtp.port)
        smtp.handler.replies = ["451 4.3.0 try again later"]
        first = mail_delivery.deliver_due(db, settings, T0)
        (row,) = _mails(db)
        assert first.retried == [row.id] and smtp.received == []
        assert (row.state, row.attempts, row.next_attempt_at) == ("queued", 1, T0 + M)
        assert row.last_error == "SMTP 451 (SMTPDataError)"
        assert mail_delivery.deliver_due(db, settings, T0 + M / 2).sent == []
        assert mail_delivery.deliver_due(db, settings, T0 + M).sent == [row.id]
    (row,) = _mails(db)
    assert (row.state, row.attempts, row.sent_at) == ("sent", 2, T0 + M)
    assert len(smtp.received) == 1


def test_a_relay_that_is_down_delays_mail_with_growing_pauses_then_gives_up(db, mailing, tmp_path):
    with transaction(db) as s:
        mailing.notify(s, "carol", "R-1", NotificationEvent.APPROVED, "approved", T0)
    settings = _mail_settings(tmp_path, free_port(), smtp_max_attempts=3)  # nobody listens
    at = T0
    for pause in (M, 5 * M):
        assert mail_delivery.deliver_due(db, settings, at).retried
        (row,) = _mails(db)
        assert row.next_attempt_at == at + pause and row.last_error == "ConnectionRefusedError"
        at += pause
    assert mail_delivery.deliver_due(db, settings, at).failed
    assert _mails(db)[0].state == "failed"
    assert mail_delivery.deliver_due(db, settings, at + 7 * D).retried == []


def test_an_unreachable_relay_ends_the_run_after_one_attempt(db, mailing, tmp_path):
    with transaction(db) as s:
        for i in range(3):
            mailing.notify(s, "carol", f"R-{i}", NotificationEvent.APPROVED, "approved", T0)
    settings = _mail_settings(tmp_path, free_port())
    result = mail_delivery.deliver_due(db, settings, T0)
    rows = _mails(db)
    assert result.retried == [rows[0].id] and [r.attempts for r in rows] == [1, 0, 0]
    with Sink() as smtp:  # the relay is back: the rest go at once, the first when due
        settings = _mail_settings(tmp_path, smtp.port)
        assert mail_delivery.deliver_due(db, settings, T0).sent == [r.id for r in rows[1:]]
        assert mail_delivery.deliver_due(db, settings, T0 + M).sent == [rows[0].id]


def test_two_deliverers_never_send_one_mail_twice(db, mailing, tmp_path):
    with transaction(db) as s:
        for i in range(12):
            mailing.notify(s, "carol", f"R-{i}", NotificationEvent.APPROVED, "approved", T0)
    with Sink() as smtp:
        settings = _mail_settings(tmp_path, smtp.port)
        start = threading.Barrier(2)
        results = []

        def run() -> None:
            start.wait()
            results.append(mail_delivery.deliver_due(db, settings, T0))

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    sent = [i for r in results for i in r.sent]
    assert sorted(sent) == sorted(set(sent)) and len(sent) == 12
    assert len(smtp.received) == 12


def test_a_claimed_row_is_not_sent_by_another_until_the_claim_is_stale(db, mailing, tmp_path):
    with transaction(db) as s:
        mailing.notify(s, "carol", "R-1", NotificationEvent.APPROVED, "approved", T0)
    (row,) = _mails(db)
    assert mail_delivery.claim(db, row.id, T0) is not None  # a deliverer that then died
    assert mail_delivery.claim(db, row.id, T0) is None
    with Sink() as smtp:
        settings = _mail_settings(tmp_path, smtp.port)
        assert mail_delivery.deliver_due(db, settings, T0 + M).sent == []
        later = T0 + mail_delivery.RECLAIM_AFTER
        assert mail_delivery.deliver_due(db, settings, later).sent == [row.id]
    assert len(smtp.received) == 1


def test_starttls_checks_the_relays_certificate(db, mailing, tmp_path, monkeypatch):
    with transaction(db) as s:
        mailing.notify(s, "carol", "R-1", NotificationEvent.APPROVED, "approved", T0)
    cert, key = self_signed(tmp_path)
    with StartTLSSink(cert, key) as smtp:
        settings = _mail_settings(tmp_path, smtp.port).model_copy(update={"smtp_tls": "starttls"})
        # A certificate nobody vouches for: nothing is sent, and it is retried.
        assert mail_delivery.deliver_due(db, settings, T0).retried
        assert _mails(db)[0].last_error == "SSLCertVerificationError"
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now a trusted CA
        assert mail_delivery.deliver_due(db, settings, T0 + M).sent
    assert len(smtp.received) == 1


def test_headers_refuse_line_breaks(tmp_path):
    settings = _mail_settings(tmp_path, 2525)
    with pytest.raises(ValueError):
        mail_delivery.message(settings, "a@b.example\r\nBcc: x@y.example", "s", "b", T0)


# -- addresses and settings -------------------------------------------------------------


def test_set_email_is_validated_and_audited_without_the_address(db, sink):
    with transaction(db) as s:
        notifications.set_email(s, "carol", " Carol@Corp.EXAMPLE.com", audit=sink, now=T0)
    with Session(db) as s:
        assert s.exec(select(User.email).where(User.username == "carol")).one() == (
            "Carol@corp.example.com"
        )
    for bad in ("carol", "carol@localhost", "a b@example.com", "x@example.com\r\nBcc: y@z.com"):
        with pytest.raises(InvalidInput, match="email"), transaction(db) as s:
            notifications.set_email(s, "carol", bad, audit=sink)
    with pytest.raises(NotFound), transaction(db) as s:
        notifications.set_email(s, "nobody", "n@example.com", audit=sink)
    with transaction(db) as s:
        notifications.set_email(s, "carol", None, audit=sink, now=T0)
    changes = [e for e in entries(sink) if e.action == AuditAction.USER_CHANGE]
    assert [e.detail["email"] for e in changes if e.detail.get("op") == "set_email"] == [
        "set",
        "cleared",
    ]
    assert all("corp.example" not in str(e.detail) for e in changes)


def test_the_holder_is_told_when_someone_else_sets_or_clears_the_address(db, sink):
    """Whoever sets an address reads that person's notices: when it is not the holder
    (the operator's CLI, an administrator clearing it) the holder is told in the vault,
    never by mail and never with the address."""
    carol = Actor("carol", "salesperson")
    with transaction(db) as s:
        notifications.set_email(s, "carol", "carol@corp.example.com", audit=sink, actor=carol)
    assert _notes(db, "carol") == []
    with transaction(db) as s:
        notifications.set_email(s, "carol", "ops@corp.example.com", audit=sink, now=T0)
        notifications.set_email(s, "carol", "ops@corp.example.com", audit=sink, now=T0)  # same
        notifications.set_email(s, "carol", None, audit=sink, actor=Actor("adm", "admin"), now=T0)
    notes = _notes(db, "carol")
    assert [n.event for n in notes] == [NotificationEvent.EMAIL_CHANGED] * 2
    assert "system" in notes[0].message and "adm" in notes[1].message
    assert all("@" not in n.message and n.created_at == T0 for n in notes)
    changes = [e.detail for e in entries(sink) if e.detail.get("op") == "set_email"]
    assert [d["by_holder"] for d in changes] == [True, False, False]


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"smtp_tls": "ssl"}, "smtp_tls"),
        ({"smtp_tls": "none", "smtp_host": "mail.example.com"}, "clear"),
        ({"smtp_host": "mail.example.com", "smtp_sender": ""}, "smtp_sender"),
        ({"smtp_host": "mail.example.com", "smtp_sender": "vault"}, "mail address"),
        ({"smtp_host": "mail.example.com\r\nX: y"}, "smtp_host"),
        ({"public_url": "javascript:alert(1)"}, "public_url"),
        ({"smtp_port": 0}, "smtp_port"),
    ],
)
def test_bad_mail_settings_are_refused(tmp_path, kw, field):
    base = {"smtp_sender": "vault@example.com", "smtp_password": "hunter2-secret"}
    with pytest.raises(ValidationError, match=field) as info:
        Settings(data_dir=tmp_path, **(base | kw))  # type: ignore[arg-type]
    assert "hunter2" not in str(info.value)


def test_plain_smtp_is_allowed_to_this_machine_only(tmp_path):
    for host in ("127.0.0.1", "localhost", "::1"):
        s = Settings(data_dir=tmp_path, smtp_host=host, smtp_tls="none", smtp_sender="v@ex.com")
        assert s.mail_enabled
    assert not Settings(data_dir=tmp_path).mail_enabled  # off by default


# -- the command line -------------------------------------------------------------------


def test_cli_sets_addresses_and_delivers(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from cli.main import app
    from policies.directory import add_user
    from policies.workflow import Workflow
    from vault.vault import init_vault

    data = tmp_path / "cli"
    vault = init_vault(Settings(data_dir=data, expected_archives=1000))
    with transaction(vault.engine) as s:
        add_user(s, username="carol", roles=["salesperson"], department="east")
    run = CliRunner().invoke
    d = ["--data-dir", str(data)]
    with transaction(vault.engine) as s:  # as carol does at PUT /me/email
        set_email(s, "carol", "carol@corp.example.com", audit=vault.audit_log(), actor=CAROL)
    off = run(app, ["notifications", "deliver", *d])
    assert off.exit_code == 0 and "mail is off" in off.output
    with Sink() as smtp:
        for key, value in {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp.port),
            "SMTP_TLS": "none",
            "SMTP_SENDER": "vault@example.com",
            "PUBLIC_URL": URL,
        }.items():
            monkeypatch.setenv(f"VAULT_{key}", value)
        wf = Workflow(audit=vault.audit_log())
        wf.notifier = Notifier(MailOptions(enabled=True, public_url=URL))
        with transaction(vault.engine) as s:
            wf.notify(s, "carol", "R-7", NotificationEvent.APPROVED, "approved", T0)
        sent = run(app, ["notifications", "deliver", *d])
        assert sent.exit_code == 0 and "sent: 1" in sent.output, sent.output
    assert [str(m["To"]) for m in smtp.received] == ["carol@corp.example.com"]
    vault.engine.dispose()


@pytest.mark.parametrize("bad", [0, -1, 2**31, 2**63])
def test_an_id_outside_the_column_is_unknown_not_a_database_error(db, bad):
    """PostgreSQL's integer column cannot compare 2**31: it must be a NotFound, not a DataError."""
    with Session(db) as session, pytest.raises(NotFound):
        notifications.mark_read(session, "li.na", bad, T0)


def test_the_operator_only_clears_an_address_never_sets_one(tmp_path):
    """Whoever sets an address reads that person's notices (loans name archives and
    borrowers): the routes refuse an administrator setting one, and so does the command
    line; the refusal is audited, and clearing one tells the holder in the vault."""
    from typer.testing import CliRunner

    from cli.main import app
    from policies.directory import add_user
    from vault.vault import init_vault

    data = tmp_path / "cli"
    vault = init_vault(Settings(data_dir=data, expected_archives=1000))
    with transaction(vault.engine) as s:
        add_user(s, username="carol", roles=["salesperson"], department="east")
        set_email(s, "carol", "carol@corp.example.com", audit=vault.audit_log(), actor=CAROL)
    run = CliRunner().invoke
    d = ["--data-dir", str(data)]
    taken = run(app, ["user", "set-email", "carol", "mallory@evil.example.com", *d])
    assert taken.exit_code == 1, taken.output
    added = run(app, ["user", "add", "dave", "--role", "salesperson", "--email",
                      "mallory@evil.example.com", "--password-stdin", *d],
                input="long enough password 1\n")  # fmt: skip
    assert added.exit_code == 2, added.output
    with Session(vault.engine) as s:
        emails = {u.username: u.email for u in s.exec(select(User)).all()}
    assert emails == {"carol": "carol@corp.example.com"}
    [denied] = vault.audit_log().query(action="user:change", outcome="denied", limit=5)
    assert denied.detail == {"op": "set_email", "user": "carol"}
    cleared = run(app, ["user", "set-email", "carol", "--clear", *d])
    assert cleared.exit_code == 0 and "told in the vault" in cleared.output, cleared.output
    with Session(vault.engine) as s:
        assert s.exec(select(User).where(User.username == "carol")).one().email is None
        told = s.exec(select(Notification).where(Notification.recipient == "carol")).all()
    assert NotificationEvent.EMAIL_CHANGED in [n.event for n in told]
    vault.engine.dispose()
