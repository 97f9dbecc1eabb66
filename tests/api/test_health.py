"""GET /healthz: what an outsider (no token) learns is ok or not ok, and nothing else."""

from __future__ import annotations

from typing import Any

import pytest


def test_healthz_does_not_count_audited_actions_for_outsiders(client, login) -> None:
    """Every read, search, login and approval appends one audit entry, so an audit head
    shown without a token would let an outsider watch the vault's activity entry by entry
    (whether a login or a read just happened)."""
    before = client.get("/healthz")
    login("zhang.wei")  # one audited action by someone else
    after = client.get("/healthz")
    assert before.status_code == after.status_code == 200
    assert before.json() == after.json() == {"status": "ok"}


def test_healthz_never_appends_to_the_audit_log(client, monkeypatch) -> None:
    """An append takes the audit log's append lock; an unauthenticated caller must not be
    able to make every writer queue behind it, nor grow or probe the log."""
    audit = client.app.state.services.audit

    def refused(*args: Any, **kw: Any) -> None:
        raise AssertionError("/healthz appended to the audit log")

    monkeypatch.setattr(audit, "append", refused)
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


@pytest.mark.parametrize("broken", ["database", "audit table"])
def test_healthz_says_only_unavailable_when_a_probe_fails(client, broken: str) -> None:
    import sqlalchemy as sa

    services = client.app.state.services
    real = services.engine
    if broken == "database":
        dead = sa.create_engine(
            "postgresql+psycopg://nobody@127.0.0.1:9/none", connect_args={"connect_timeout": 1}
        )
    else:  # the database answers, the audit table does not (an empty SQLite file)
        dead = sa.create_engine("sqlite://")
    services.vault.engine = services.store.engine = dead
    try:
        r = client.get("/healthz")
    finally:
        services.vault.engine = services.store.engine = real
        dead.dispose()
    assert r.status_code == 503 and r.json() == {"status": "unavailable"}
