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
    q_pw, s_pw = "long enough password 1\n", "long enough password 2\n"
    report = json.loads(
        run("access-report", no, "--user", "q.audit", "--json", "--password-stdin",
            data=data, stdin=q_pw).stdout
    )  # fmt: skip
    assert report["archive"]["archive_no"] == no and report["held"]["groups"]
    assert "accesses" in report
    table = run(
        "access-report", no, "--user", "q.audit", "--password-stdin", data=data, stdin=q_pw
    ).stdout
    assert no in table and "held:" in table
    refused = run(
        "access-report", no, "--user", "s.one", "--password-stdin",
        data=data, stdin=s_pw, check=False,
    )  # fmt: skip
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
    bad = run(
        "access-report", "nope", "--user", "q.audit", "--password-stdin",
        data=data, stdin=q_pw, check=False,
    )  # fmt: skip
    assert bad.returncode == 1 and "archive number" in bad.stderr


def test_naming_a_compliance_user_is_not_being_them(data: Path) -> None:
    """The route needs the compliance user's own token; the command line needed only
    their name, so an operator got the report (who read the customer, why) recorded as
    that user's act. Without their password it is refused, and nothing is reported."""
    run(
        "user", "add", "q.audit", "--role", "compliance", "--department", "合规部",
        "--password-stdin", data=data, stdin="long enough password 1\n",
    )  # fmt: skip
    run("seed", "--customers", "1", data=data)
    db = sa.create_engine(f"sqlite:///{data / 'vault.db'}")
    with db.connect() as conn:
        no = conn.execute(sa.text("SELECT archive_no FROM archive")).scalar_one()
    for stdin, args in ((None, ()), ("not the password\n", ("--password-stdin",))):
        refused = run(
            "access-report", no, "--user", "q.audit", "--json", *args,
            data=data, stdin=stdin, check=False,
        )  # fmt: skip
        assert refused.returncode != 0 and no not in refused.stdout, refused.stdout
    with db.connect() as conn:
        reports = conn.execute(
            sa.select(sa.func.count()).where(entry_table.c.action == "archive:access-report")
        ).scalar_one()
        failed = conn.execute(
            sa.select(sa.func.count()).where(entry_table.c.action == "auth:login-failed")
        ).scalar_one()
    db.dispose()
    assert reports == 0 and failed == 1
