"""Behind a reverse proxy: the client address comes from X-Forwarded-For only when the proxy is
named with ``serve --forwarded-allow-ips``, so nobody else can choose what the audit records."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from api.security import _hasher
from audit.models import entry_table
from foundation.db import transaction
from policies.directory import add_user
from tests.conftest import PG_URL

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"
SPOOFED = "203.0.113.7"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(vault) -> dict[str, str]:
    env = {
        **os.environ,
        "VAULT_DATA_DIR": str(vault.settings.data_dir),
        "VAULT_LOGIN_DELAY_SECONDS": "0",
        "PYTHONPATH": str(ROOT),
    }
    if vault.engine.dialect.name == "postgresql":
        with vault.engine.connect() as conn:
            schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
        env["VAULT_DATABASE_URL"] = f"{PG_URL}?options=-csearch_path%3D{schema}"
    else:
        env["VAULT_DATABASE_URL"] = vault.engine.url.render_as_string(hide_password=False)
    return env


def _serve(vault, *options: str) -> Iterator[str]:
    port = _free_port()
    cmd = [sys.executable, "-m", "cli.main", "serve", "--port", str(port), *options]
    proc = subprocess.Popen(
        cmd, env=_env(vault), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                pytest.fail(f"serve exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            pytest.fail("the served vault did not come up")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
    for base in _serve(vault):
        assert _sign_in(base, user, "wrong password") == 401
        assert _sign_in(base, user, PASSWORD) == 200
    assert _clients_of_logins(vault, user) == ["127.0.0.1", "127.0.0.1"]


def test_the_named_proxy_sets_the_client_address(vault, user) -> None:
    for base in _serve(vault, "--forwarded-allow-ips", "127.0.0.1"):
        assert _sign_in(base, user, "wrong password") == 401
        assert _sign_in(base, user, PASSWORD) == 200
    assert _clients_of_logins(vault, user) == [SPOOFED, SPOOFED]


def test_a_proxy_that_is_not_the_peer_is_not_believed(vault, user) -> None:
    for base in _serve(vault, "--forwarded-allow-ips", "10.1.2.0/24"):
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
