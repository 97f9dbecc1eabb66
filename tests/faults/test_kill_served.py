"""The service killed with SIGKILL in the middle of a request that changes something.

``archive-vault serve`` (one process) is held inside the request's transaction, just
after the request's audit entry was appended and before the commit, and killed there.
Afterwards the change did not happen and has no entry, the log verifies, and the same
request on a restarted service completes with its entry (a destruction with its
certificate, an approval with its signature).
"""

from __future__ import annotations

import threading
from datetime import date, timedelta

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


def _killed_during(vault, env, marker, action: str, user: str, path: str, body: dict) -> None:
    """POST ``path`` as ``user`` to a service held after appending ``action``; kill it there."""
    held = held_env(env, marker, APPENDS, FAULT_HOLD_MATCH=f"'{action}'")
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


def test_a_destruction_killed_before_its_commit_did_not_happen_and_completes_later(
    api_vault, client, login, env, marker
) -> None:
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
