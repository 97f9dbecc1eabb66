"""Behind a reverse proxy: the client address comes from X-Forwarded-For only when the proxy is
named with ``serve --forwarded-allow-ips``, so nobody else can choose what the audit records."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import sqlalchemy as sa

from api.security import _hasher
from audit.models import entry_table
from foundation.db import transaction
from policies.directory import add_user
from tests.served import ROOT, served_cli, vault_env

PASSWORD = "correct horse battery staple"
SPOOFED = "203.0.113.7"


def _env(vault) -> dict[str, str]:
    return vault_env(vault, VAULT_LOGIN_DELAY_SECONDS="0")


@contextmanager
def _serve(vault, *options: str) -> Iterator[str]:
    with served_cli(vault.settings.data_dir, *options, env=_env(vault)) as served:
        yield served.base


@pytest.fixture
def user(vault) -> str:
    with transaction(vault.engine) as session:
        account = add_user(session, username="li.na", roles=["salesperson"], department="销售一部")
        account.password_hash = _hasher.hash(PASSWORD)
        session.add(account)
    return "li.na"


def _clients_of_logins(vault, username: str) -> list[str | None]:
    log = vault.audit_log()
    log.integrate()
    with vault.engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(entry_table.c.client)
                .where(entry_table.c.actor == username)
                .where(entry_table.c.action.in_(["auth:login", "auth:login-failed"]))
                .order_by(entry_table.c.seq)
            ).scalars()
        )


def _sign_in(base: str, username: str, password: str) -> int:
    return httpx.post(
        base + "/auth/token",
        data={"username": username, "password": password},
        headers={"X-Forwarded-For": SPOOFED},
        timeout=60,
    ).status_code


def test_without_a_named_proxy_the_header_is_ignored(vault, user) -> None:
    with _serve(vault) as base:
        assert _sign_in(base, user, "wrong password") == 401
        assert _sign_in(base, user, PASSWORD) == 200
    assert _clients_of_logins(vault, user) == ["127.0.0.1", "127.0.0.1"]


def test_the_named_proxy_sets_the_client_address(vault, user) -> None:
    with _serve(vault, "--forwarded-allow-ips", "127.0.0.1") as base:
        assert _sign_in(base, user, "wrong password") == 401
        assert _sign_in(base, user, PASSWORD) == 200
    assert _clients_of_logins(vault, user) == [SPOOFED, SPOOFED]


def test_a_proxy_that_is_not_the_peer_is_not_believed(vault, user) -> None:
    with _serve(vault, "--forwarded-allow-ips", "10.1.2.0/24") as base:
        assert _sign_in(base, user, PASSWORD) == 200
    assert _clients_of_logins(vault, user) == ["127.0.0.1"]


@pytest.mark.parametrize("value", ["*", "proxy.example", "10.0.0.300"])
def test_trusting_every_peer_or_a_name_is_refused(vault, value: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "serve", "--forwarded-allow-ips", value],
        env=_env(vault),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    line = " ".join(proc.stderr.split())
    assert "--forwarded-allow-ips" in line and "not an IP address or network" in line
    assert "Traceback" not in proc.stderr
