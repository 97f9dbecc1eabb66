"""PostgreSQL: the service's database connections terminated under load.

A served vault is read by a few client threads while its backends are terminated
(``pg_terminate_backend``, as a failover, a restarted pooler or an administrator
would). Only this service's backends are terminated, picked by the application
name it connects with: the shared test server's other sessions are not touched.

A request whose connection went away is a 503 with a short problem and no customer
data; the service recovers by itself (reads answer 200 again, no restart); every
200 that carried content has its ``read`` entry; the log verifies.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter

import httpx
import pytest
import sqlalchemy as sa

from audit.events import AuditAction, Outcome
from tests.api.conftest import PASSWORD
from tests.conftest import PG_URL
from tests.factories import SALES, archive
from tests.faults.kill import audit_verifies
from tests.served import pg_schema_url, served_cli, vault_env

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

READERS = 3
ROUNDS = 5  # terminations, a moment apart


def _reader(base, phones, tally, stop, after) -> None:
    with httpx.Client(base_url=base, timeout=30) as c:
        while not stop.is_set():  # a sign-in may meet a dropped connection too: a 503, again
            r = c.post("/auth/token", data={"username": "zhang.wei", "password": PASSWORD})
            if r.status_code == 200:
                c.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
                break
            tally["bad"].append((r.status_code, r.headers.get("content-type"), r.text))
            time.sleep(0.05)
        numbers = sorted(phones)
        i = 0
        while not stop.is_set():
            no = numbers[i % len(numbers)]
            i += 1
            late = after.is_set()
            try:
                r = c.get(f"/customers/{no}?groups=contact")
            except httpx.HTTPError as exc:
                tally["errors"].append(type(exc).__name__)
                continue
            text = r.text + json.dumps(r.json() if r.content else {}, ensure_ascii=False)
            if r.status_code == 200:
                assert r.json()["content"]["contact"]["mobile_phone"] == phones[no]
                tally["ok"][no] += 1
                tally["late"] += late
            else:
                tally["bad"].append((r.status_code, r.headers.get("content-type"), text))
                time.sleep(0.05)


def test_terminated_backends_are_503s_and_the_service_recovers(store, api_vault) -> None:
    if api_vault.engine.dialect.name != "postgresql":
        pytest.skip("terminating backends is PostgreSQL's")
    phones = {}
    for i in range(4):
        phone = f"1360000{i:04d}"
        made = store.filing.create(archive(profile={"name": f"断线客户{i}", "mobile_phone": phone}),
                                   actor=SALES)  # fmt: skip
        phones[made.archive_no] = phone
    with api_vault.engine.connect() as conn:
        schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
    app_name = "vault_fault_" + secrets.token_hex(4)
    url = pg_schema_url(schema, application_name=app_name)
    env = vault_env(api_vault, VAULT_DATABASE_URL=url, VAULT_LOGIN_DELAY_SECONDS="0")
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    tallies = [{"ok": Counter(), "late": 0, "bad": [], "errors": []} for _ in range(READERS)]
    stop, after = threading.Event(), threading.Event()
    terminated = 0
    try:
        with served_cli(api_vault.settings.data_dir, env=env) as served:
            threads = [
                threading.Thread(target=_reader, args=(served.base, phones, t, stop, after))
                for t in tallies
            ]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 60

            def ok() -> int:
                return sum(sum(t["ok"].values()) for t in tallies)

            while ok() < 30 and time.monotonic() < deadline:
                time.sleep(0.05)
            for _ in range(ROUNDS):
                with admin.connect() as conn:
                    terminated += len(conn.execute(sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND application_name = :name"
                    ), {"name": app_name}).all())  # fmt: skip
                time.sleep(0.2)
            after.set()
            while time.monotonic() < deadline and any(t["late"] < 5 for t in tallies):
                time.sleep(0.05)
            stop.set()
            for t in threads:
                t.join(timeout=60)
    finally:
        stop.set()
        admin.dispose()

    bad = [b for t in tallies for b in t["bad"]]
    errors = [e for t in tallies for e in t["errors"]]
    print(f"terminated {terminated} backends; {ok()} reads; refused {Counter(b[0] for b in bad)}")
    assert terminated > 0, "no backend of the service was terminated: the test proved nothing"
    assert errors == [], errors  # every request got an answer
    for status, ctype, text in bad:
        assert status == 503 and ctype.startswith("application/problem+json"), (status, text)
        assert len(text) < 1000 and not any(p in text for p in phones.values()), text
        assert "断线客户" not in text
    assert all(t["late"] >= 5 for t in tallies), "the service did not recover without a restart"

    log = api_vault.audit_log()
    log.integrate()
    answered = sum((t["ok"] for t in tallies), Counter())
    for no, n in answered.items():
        got = log.query(actor="zhang.wei", archive=no, action=AuditAction.READ,
                        outcome=Outcome.ALLOWED, limit=10_000)  # fmt: skip
        assert len(got) >= n, f"{no}: {n} answers with content, {len(got)} read entries"
    audit_verifies(env)
