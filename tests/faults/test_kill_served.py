"""The service killed with SIGKILL in the middle of a request that changes something.

``archive-vault serve`` (one process) is held inside the request's transaction, just
after the request's audit entry was appended and before the commit, and killed there.
Afterwards the change did not happen and has no entry, the log verifies, and the same
request on a restarted service completes with its entry (a destruction with its
certificate, an approval with its signature). A destruction killed after its commit,
before SQLite's WAL was folded into the file, is complete, and the restarted service
folds the WAL before it serves: the erased key is in no byte of the files.
"""

from __future__ import annotations

import threading
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.api.conftest import PASSWORD
from tests.factories import archive
from tests.faults.conftest import count, entries
from tests.faults.kill import HELD_CLI, audit_verifies, held_env, kill_pid, wait_for
from tests.served import served_cli

pytestmark = pytest.mark.slow

APPENDS = "audit.appender:Appender.append,audit.appender:Appender.append_sequenced"


def _new(client, headers) -> str:
    body = archive(retention_until=(date.today() + timedelta(days=1)).isoformat())
    body.pop("owner", None)
    r = client.post("/customers", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["archive"]["archive_no"]


def _token(base: str, user: str) -> dict[str, str]:
    r = httpx.post(f"{base}/auth/token", data={"username": user, "password": PASSWORD}, timeout=60)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _killed_during(
    vault, env, marker, action: str, user: str, path: str, body: dict, **hold: str
) -> None:
    """POST ``path`` as ``user`` to a service held after appending ``action`` (or at
    ``hold``); kill it there."""
    hold = hold or {"FAULT_HOLD": APPENDS, "FAULT_HOLD_MATCH": f"'{action}'"}
    held = held_env(env, marker, "", **hold)
    with served_cli(vault.settings.data_dir, env=held, command=HELD_CLI) as served:
        headers = _token(served.base, user)
        answers: list[object] = []

        def post() -> None:
            try:
                answers.append(httpx.post(served.base + path, json=body, headers=headers,
                                          timeout=120))  # fmt: skip
            except httpx.HTTPError as exc:
                answers.append(exc)

        thread = threading.Thread(target=post, daemon=True)
        thread.start()
        kill_pid(wait_for(marker, served.proc))
        thread.join(timeout=60)
    assert len(answers) == 1 and isinstance(answers[0], httpx.HTTPError), answers


def _again(vault, env, user: str, path: str, body: dict) -> httpx.Response:
    with served_cli(vault.settings.data_dir, env=env) as served:
        return httpx.post(served.base + path, json=body, headers=_token(served.base, user),
                          timeout=120)  # fmt: skip


def _approved_destruction(api_vault, client, login) -> tuple[str, str]:
    """An archive past its retention and an approved request to destroy it."""
    no = _new(client, login("zhang.wei"))
    with api_vault.engine.begin() as conn:  # its retention ran out (filing refuses a past date)
        conn.execute(
            sa.text("UPDATE archive SET retention_until = :d WHERE archive_no = :no"),
            {"d": date.today() - timedelta(days=2), "no": no},
        )
    r = client.post("/requests", headers=login("chen.jing"), json={
        "kind": "destroy", "archives": [no], "purpose": "retention_expired",
        "reason": "保管期满，已失去价值",
    })  # fmt: skip
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    r = client.post(f"/requests/{uid}/approve", json={}, headers=login("sun.li"))
    assert r.status_code == 200 and r.json()["state"] == "approved", r.text
    return no, uid


def test_a_destruction_killed_before_its_commit_did_not_happen_and_completes_later(
    api_vault, client, login, env, marker
) -> None:
    no, uid = _approved_destruction(api_vault, client, login)
    path, body = f"/customers/{no}/destroy", {"request": uid}

    _killed_during(api_vault, env, marker, "archive:destroy", "chen.jing", path, body)
    assert count(api_vault, "archive", "status = 'destroyed'") == 0
    assert entries(api_vault, "archive:destroy") == 0
    read = client.get(f"/customers/{no}?groups=contact", headers=login("zhang.wei"))
    assert read.status_code == 200 and read.json()["content"]["contact"], read.text
    audit_verifies(env)

    done = _again(api_vault, env, "chen.jing", path, body)
    assert done.status_code == 200, done.text
    certificate = done.json()
    assert certificate["archive_no"] == no and certificate["certificate_id"]
    assert count(api_vault, "archive", "status = 'destroyed'") == 1
    assert entries(api_vault, "archive:destroy") == 1
    gone = client.get(f"/customers/{no}", headers=login("zhang.wei"))
    assert gone.status_code == 410, gone.text
    audit_verifies(env)


def test_an_approval_killed_before_its_commit_is_not_signed_and_signs_later(
    api_vault, client, login, env, marker
) -> None:
    no = _new(client, login("zhang.wei"))
    r = client.post("/requests", headers=login("li.na"), json={
        "kind": "view", "archives": [no], "groups": ["contact"],
        "purpose": "customer_service", "reason": "客户来电，需回电",
    })  # fmt: skip
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    path = f"/requests/{uid}/approve"

    _killed_during(api_vault, env, marker, "request:approve", "head.one", path, {})
    after = client.get(f"/requests/{uid}", headers=login("li.na")).json()
    assert after["state"] == "pending" and after["next_signer"] == r.json()["next_signer"]
    assert entries(api_vault, "request:approve") == 0
    audit_verifies(env)

    signed = _again(api_vault, env, "head.one", path, {})
    assert signed.status_code == 200, signed.text
    assert signed.json()["next_signer"] != r.json()["next_signer"]
    assert entries(api_vault, "request:approve") == 1
    audit_verifies(env)


def test_a_destruction_killed_after_its_commit_is_complete_and_gone_from_the_file_at_restart(
    api_vault, client, login, env, marker
) -> None:
    """Killed between the commit and the folding of SQLite's WAL into the file: the
    destruction is done (its entry holds the certificate), and the next start of the
    service folds the WAL, so the wrapped key is in no byte of the database files."""
    no, uid = _approved_destruction(api_vault, client, login)
    with api_vault.engine.connect() as conn:
        wrapped = conn.execute(
            sa.text("SELECT wrapped_dek FROM archive WHERE archive_no = :no"), {"no": no}
        ).scalar_one()
    path, body = f"/customers/{no}/destroy", {"request": uid}
    hold = {"FAULT_HOLD": "vault.lifecycle:Lifecycle.checkpoint", "FAULT_HOLD_WHEN": "before"}
    _killed_during(api_vault, env, marker, "", "chen.jing", path, body, **hold)
    sqlite = api_vault.engine.dialect.name == "sqlite"
    db = Path(api_vault.engine.url.database or "")
    with served_cli(api_vault.settings.data_dir, env=env):  # restarted at once, serving
        raw = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*")) if sqlite else b""
    assert wrapped not in raw, "the destroyed archive's wrapped key is still in the files"
    assert count(api_vault, "archive", "status = 'destroyed'") == 1
    log = client.get(f"/audit?archive={no}&action=archive:destroy", headers=login("qian.audit"))
    (entry,) = log.json()["items"]
    assert entry["detail"]["certificate"]["archive_no"] == no
    audit_verifies(env)
