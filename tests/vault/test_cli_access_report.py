"""``archive-vault access-report``: decided for the named user, audited, JSON or a table."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from audit.models import entry_table
from tests.vault.test_cli import data, run

__all__ = ["data"]


def test_access_report_for_compliance_and_refused_to_a_salesperson(data: Path) -> None:
    run(
        "user",
        "add",
        "q.audit",
        "--role",
        "compliance",
        "--department",
        "合规部",
        "--password-stdin",
        data=data,
        stdin="long enough password 1\n",
    )
    run(
        "user",
        "add",
        "s.one",
        "--role",
        "salesperson",
        "--department",
        "销售一部",
        "--password-stdin",
        data=data,
        stdin="long enough password 2\n",
    )
    run("seed", "--customers", "1", data=data)
    db = sa.create_engine(f"sqlite:///{data / 'vault.db'}")
    with db.connect() as conn:
        no = conn.execute(sa.text("SELECT archive_no FROM archive")).scalar_one()
    report = json.loads(run("access-report", no, "--user", "q.audit", "--json", data=data).stdout)
    assert report["archive"]["archive_no"] == no and report["held"]["groups"]
    assert "accesses" in report
    table = run("access-report", no, "--user", "q.audit", data=data).stdout
    assert no in table and "held:" in table
    refused = run("access-report", no, "--user", "s.one", data=data, check=False)
    assert refused.returncode == 1 and "error" in refused.stderr
    with db.connect() as conn:
        outcomes = sorted(
            tuple(r)
            for r in conn.execute(
                sa.select(entry_table.c.actor, entry_table.c.outcome).where(
                    entry_table.c.action == "archive:access-report"
                )
            )
        )
    db.dispose()
    assert outcomes == [("q.audit", "allowed"), ("q.audit", "allowed"), ("s.one", "denied")]
    bad = run("access-report", "nope", "--user", "q.audit", data=data, check=False)
    assert bad.returncode == 1 and "archive number" in bad.stderr
