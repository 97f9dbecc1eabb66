"""``archive-vault leaks``: the operator sees the clocks and the notice, not the case."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlmodel import Session, select
from typer.testing import CliRunner

from audit.events import Actor
from audit.models import AuditEntry
from cli.main import app
from foundation.clock import utcnow
from foundation.db import transaction
from foundation.settings import Settings
from policies.decision import Principal
from policies.directory import add_user
from policies.leak_duties import Assessment, LeakDuties
from policies.leaks import LeakCases, LeakReport
from policies.workflow import Workflow
from vault.vault import init_vault

SECRET = "王小明 13800138000 in a chat group"


def test_the_operator_lists_shows_and_prints_notices_without_the_case(tmp_path) -> None:
    data = tmp_path / "cli"
    vault = init_vault(Settings(data_dir=data, expected_archives=1000))
    with transaction(vault.engine) as s:
        add_user(s, username="whistle", roles=["salesperson"], department="east")
        add_user(s, username="boss", roles=["info_supervisor"], department="cs")
    leaks = LeakCases(Workflow(audit=vault.audit_log()), vault.keys)
    duties = LeakDuties(leaks, vault.settings, vault.schema)
    filer = Principal(username="whistle", roles=frozenset({"salesperson"}))
    boss = Principal(username="boss", roles=frozenset({"info_supervisor"}))
    now = utcnow()
    with transaction(vault.engine) as s:
        quiet = leaks.file_report(
            s, filer, Actor("whistle", "salesperson"), LeakReport(what_seen="nothing much"), now
        )
        late = leaks.file_report(
            s, filer, Actor("whistle", "salesperson"), LeakReport(what_seen=SECRET), now
        )
        late.account = "suspect.one"
        duties.assess(
            s,
            late.uid,
            boss,
            Actor("boss", "info_supervisor"),
            now,
            Assessment(
                pi_affected=True,
                customers=3,
                groups=("contact",),
                cause="insider_disclosure",
                aware_at=now - timedelta(hours=5),
                reason=SECRET,
            ),
        )
        uids = quiet.uid, late.uid
    run = CliRunner().invoke
    d = ["--data-dir", str(data)]
    listed = run(app, ["leaks", "list", "--json", *d])
    assert listed.exit_code == 1, listed.output  # a notice is overdue
    rows = json.loads(listed.output.splitlines()[0])
    assert [r["uid"] for r in rows] == [uids[1], uids[0]]
    assert rows[0]["overdue"] is True and rows[0]["regulator"]["overdue"] is True
    table = run(app, ["leaks", "list", "--overdue", *d])
    assert table.exit_code == 1 and uids[1] in table.output and uids[0] not in table.output
    assert "OVERDUE" in table.output
    shown = run(app, ["leaks", "show", uids[1], *d])
    assert shown.exit_code == 0, shown.output
    assert "contact" in shown.output and "regulator" in shown.output
    notice = run(app, ["leaks", "notice", uids[1], "--lang", "en", *d])
    assert notice.exit_code == 0 and "Contact" in notice.output and uids[1] in notice.output
    for out in (listed.output, table.output, shown.output, notice.output):
        assert "王小明" not in out and "13800138000" not in out
        assert "whistle" not in out and "suspect.one" not in out
    assert run(app, ["leaks", "show", "LK-0000000000", *d]).exit_code != 0
    bad = run(app, ["leaks", "show", "nope", *d])
    assert bad.exit_code == 2 and "not a case number" in bad.output
    assert run(app, ["leaks", "notice", uids[1], "--lang", "fr", *d]).exit_code == 2
    with Session(vault.engine) as s:
        reads = s.exec(
            select(AuditEntry).where(
                AuditEntry.action == "leak:read", AuditEntry.actor.startswith("cli:")
            )
        ).all()
    assert len(reads) == 4  # list, list --overdue, show, notice
