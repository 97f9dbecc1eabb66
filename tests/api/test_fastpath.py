"""``FastRead`` answers exactly as the routed endpoint does, audits once, and never waits on the loop.

Every request is sent to two apps over the same vault: the service as built
(with the fast path) and one with the fast path taken out, so every answer is
the routed FastAPI endpoint's. Status, body and the security headers must agree.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import api.deps
import api.routers.customers
from api.app import create_app
from api.fastpath import FastRead
from foundation.db import transaction
from policies.directory import disable_user
from tests.factories import archive
from vault.vault import Vault

HEADERS = (
    "content-type",
    "cache-control",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "www-authenticate",
)


@pytest.fixture
def routed(api_vault: Vault, clock) -> Iterator[TestClient]:
    """The same service without the fast path: every read goes through FastAPI's route."""
    app = create_app(vault=api_vault, clock=clock)
    app.user_middleware = [m for m in app.user_middleware if m.cls is not FastRead]
    with TestClient(app) as c:
        yield c


@pytest.fixture
def archives(client: TestClient, login: Callable[[str], dict[str, str]]) -> dict[str, str]:
    made = {}
    for owner in ("zhang.wei", "wang.fang"):
        body = archive()
        body.pop("owner", None)
        body.pop("department", None)  # the filer's own department
        r = client.post("/customers", json=body, headers=login(owner))
        assert r.status_code == 201, r.text
        made[owner] = r.json()["archive"]["archive_no"]
    return made


def _same(fast: TestClient, routed: TestClient, url: str, headers: dict[str, str]) -> int:
    a, b = fast.get(url, headers=headers), routed.get(url, headers=headers)
    assert a.status_code == b.status_code, (url, a.text, b.text)
    assert a.json() == b.json(), url
    for name in HEADERS:
        assert a.headers.get(name) == b.headers.get(name), (url, name)
    return a.status_code


def test_answers_match_the_routed_endpoint(client, routed, login, archives) -> None:
    mine, theirs = archives["zhang.wei"], archives["wang.fang"]
    h = login("zhang.wei")
    cases = {
        f"/customers/{mine}": 200,
        f"/customers/{mine}?groups=contact": 200,
        f"/customers/{mine}?groups=identity,contact": 200,
        f"/customers/{mine}?groups=": 200,
        f"/customers/{mine}?groups=contact&groups=identity": 200,
        f"/customers/{mine}?groups=contact&extra=1": 200,
        f"/customers/{mine}?groups=shoe_size": 422,
        f"/customers/{mine}?groups=" + "contact," * 60: 422,
        f"/customers/{theirs}?groups=contact": 403,
        "/customers/KH-2099-999999": 404,
        "/customers/KH-1": 422,
        "/customers/kh-2026-000001": 422,
        "/customers/KH-\uff12\uff10\uff12\uff16-000001": 422,  # full-width digits: a look-alike
    }
    for url, status in cases.items():
        assert _same(client, routed, url, h) == status, url


def test_token_problems_match_the_routed_endpoint(client, routed, login, archives) -> None:
    url = f"/customers/{archives['zhang.wei']}?groups=contact"
    good = login("zhang.wei")["Authorization"]
    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not.a.token"},
        {"Authorization": good[:-4] + "AAAA"},
        {"Authorization": "Basic " + good.split()[1]},
    ):
        assert _same(client, routed, url, headers) == 401, headers


def test_expired_and_revoked_tokens_are_refused_after_being_cached(
    client, login, archives, clock
) -> None:

    url = f"/customers/{archives['zhang.wei']}?groups=contact"
    h = login("zhang.wei")
    assert client.get(url, headers=h).status_code == 200  # verified once, now remembered
    clock.advance(minutes=16)
    r = client.get(url, headers=h)
    assert r.status_code == 401 and r.json()["detail"] == "token expired"
    clock.advance(minutes=-16)
    with transaction(client.app.state.services.engine) as session:
        disable_user(session, "zhang.wei")
    r = client.get(url, headers=h)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    suffix=st.sampled_from(["", "?groups=", "?groups=contact", "?x="])
    | st.text(alphabet="?&=,%+ contacidenyKH-0123456789", max_size=40),
)
def test_any_query_gets_the_routed_answer(client, routed, login, archives, suffix) -> None:
    url = f"/customers/{archives['zhang.wei']}" + ("" if suffix.startswith("?") else "?") + suffix
    _same(client, routed, url, login("zhang.wei"))


def _reads(client: TestClient, login, no: str) -> list[dict]:
    r = client.get(f"/audit?archive={no}&action=archive:read", headers=login("qian.audit"))
    return r.json()["items"]


def test_well_formed_reads_skip_the_route_and_audit_once(
    client, login, archives, monkeypatch
) -> None:
    routed_calls = []
    real = api.routers.customers.run_blocking

    async def spy(*args):
        routed_calls.append(args)
        return await real(*args)

    monkeypatch.setattr(api.routers.customers, "run_blocking", spy)
    mine, theirs = archives["zhang.wei"], archives["wang.fang"]
    h = login("zhang.wei")
    assert client.get(f"/customers/{mine}?groups=contact", headers=h).status_code == 200
    assert client.get(f"/customers/{theirs}?groups=contact", headers=h).status_code == 403
    assert routed_calls == []
    assert [e["outcome"] for e in _reads(client, login, mine)] == ["allowed"]
    assert [e["outcome"] for e in _reads(client, login, theirs)] == ["denied"]
    # an extra parameter is not the fast path's to judge: the route answers it
    assert client.get(f"/customers/{mine}?groups=contact&x=1", headers=h).status_code == 200
    assert len(routed_calls) == 1
    assert len(_reads(client, login, mine)) == 2


def test_a_locked_sqlite_file_never_blocks_the_event_loop(
    client, login, archives, backend, monkeypatch
) -> None:
    """Another process holds the write lock: the inline attempt gives up at once and
    the read is retried in a worker thread, where it waits; one audit entry results."""
    if backend != "sqlite":
        pytest.skip("SQLite's file lock")
    hops = []
    handed_over = threading.Event()
    real = api.deps.run_in_threadpool

    async def counting(fn, *args):
        hops.append(fn)
        handed_over.set()
        return await real(fn, *args)

    monkeypatch.setattr(api.deps, "run_in_threadpool", counting)
    services = client.app.state.services
    other = sqlite3.connect(
        services.engine.url.database, isolation_level=None, check_same_thread=False
    )
    other.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release() -> None:
        # Held until the read has been handed to a worker thread (or, if it never is,
        # for a while): an inline attempt that waited instead would find it released
        # only after this, succeed without a hop, and fail the test below.
        handed_over.wait(timeout=10)
        other.execute("ROLLBACK")
        released.set()

    releaser = threading.Thread(target=release)
    releaser.start()
    try:
        no = archives["zhang.wei"]
        r = client.get(f"/customers/{no}?groups=contact", headers=login("zhang.wei"))
    finally:
        releaser.join()
        other.close()
    assert released.is_set()
    assert r.status_code == 200, r.text
    assert len(hops) == 1  # the inline attempt failed fast and handed over
    assert [e["outcome"] for e in _reads(client, login, no)] == ["allowed"]
