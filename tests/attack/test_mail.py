"""Where notices are mailed: one administrator points a register keeper's mail at their
own mailbox, unseen by the keeper, and then reads which archives which colleague has
out on loan (DESIGN.md: administrators never see content; visibility.py: nobody learns
who asks for what). Each test fails while the hole is open."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session

from foundation.settings import Settings
from policies.notifications import outbox
from tests.api.test_workflow import _approve, _file, _new


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Mail on (notices go to the outbox); nothing is sent in these tests."""
    return Settings(
        data_dir=tmp_path / "var",
        expected_archives=1000,
        smtp_host="127.0.0.1",
        smtp_port=2525,
        smtp_tls="none",
        smtp_sender="vault@example.com",
        public_url="https://vault.example.com",
    )


def test_an_administrator_cannot_redirect_a_keepers_mail_to_read_the_loan_register(
    client, login, api_vault, clock
) -> None:
    adm = login("admin")
    mine = "it.admin@corp.example.com"
    r = client.patch("/users/chen.jing", json={"email": mine}, headers=adm)
    # chen.jing is not asked, and is told nothing in the vault either
    notes = client.get("/notifications", headers=login("chen.jing")).json()["items"]
    no = _new(client, login("zhang.wei"))
    loan = _file(
        client,
        login("li.na"),
        kind="loan",
        archives=[no],
        groups=["identity"],
        purpose="customer_service",
        reason="上门拜访",
        material="合同原件",
        copies=1,
        hours=48,
    )
    _approve(client, login("head.one"), loan["id"])
    _approve(client, login("chen.jing"), loan["id"])
    clock.advance(hours=47)  # due within a day: the register keepers are told
    client.app.state.services.sweep()
    with Session(api_vault.engine) as s:
        to_admin = [m for m in outbox(s) if m.address == mine]
    leaked = [m.subject + m.body for m in to_admin if no in m.body or "li.na" in m.body]
    assert leaked == [], leaked
    assert r.status_code != 200 or notes, "the keeper's address changed without her knowing"
