"""Authentication: tokens that are forged, expired or misdirected are all refused."""

from __future__ import annotations

import base64
import json
import time

from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt

from api.security import AUDIENCE
from tests.api.conftest import PASSWORD


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(issuer: str, **over) -> dict:
    now = int(time.time())
    return {
        "sub": "zhang.wei",
        "iss": issuer,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
        "jti": "abc123",
        "gen": 0,
        **over,
    }


def _refused(client, token: str) -> None:
    r = client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].startswith("urn:archive-vault:")


def test_login_and_me(client, login) -> None:
    me = client.get("/me", headers=login("chen.jing")).json()
    assert me == {
        "username": "chen.jing",
        "roles": ["information_officer"],
        "department": "客户服务部",
        "clearance": "top_secret",
        "external": False,
    }


def test_no_token_and_garbage_tokens(client) -> None:
    r = client.get("/me")
    assert r.status_code == 401 and "POST /auth/token" in r.json()["detail"]
    for token in ("abc", "a.b.c", "x" * 5000, "..", "eyJ.eyJ.sig"):
        _refused(client, token)


def test_forged_tokens_are_refused(client) -> None:
    services = client.app.state.services
    issuer, secret = services.tokens.issuer, services.vault.keys.secret("token_signing")
    # alg "none"
    _refused(client, f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(issuer))}.")
    # RS256 signed by an attacker (HS/RS confusion)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _refused(client, jwt.encode(_claims(issuer), pem, algorithm="RS256"))
    # HS512 with the right secret: not on the allow-list
    _refused(client, jwt.encode(_claims(issuer), secret, algorithm="HS512"))
    # wrong secret, wrong audience, wrong issuer, expired, missing jti/sub
    _refused(client, jwt.encode(_claims(issuer), b"k" * 32, algorithm="HS256"))
    _refused(client, jwt.encode(_claims(issuer, aud="another-api"), secret, algorithm="HS256"))
    _refused(client, jwt.encode(_claims("someone-else"), secret, algorithm="HS256"))
    _refused(
        client, jwt.encode(_claims(issuer, exp=int(time.time()) - 10), secret, algorithm="HS256")
    )
    no_jti = _claims(issuer)
    del no_jti["jti"]
    _refused(client, jwt.encode(no_jti, secret, algorithm="HS256"))
    no_generation = _claims(issuer)
    del no_generation["gen"]
    _refused(client, jwt.encode(no_generation, secret, algorithm="HS256"))
    for bad in (True, -1, "0", 1.0):
        _refused(client, jwt.encode(_claims(issuer, gen=bad), secret, algorithm="HS256"))
    # a genuine token with its payload edited (privilege escalation attempt)
    good = jwt.encode(_claims(issuer), secret, algorithm="HS256")
    head, _, sig = good.split(".")
    _refused(client, f"{head}.{_b64(_claims(issuer, sub='admin'))}.{sig}")
    # and the genuine one works, proving the checks above are not vacuous
    r = client.get("/me", headers={"Authorization": f"Bearer {good}"})
    assert r.status_code == 200 and r.json()["username"] == "zhang.wei"


def test_disabled_user_tokens_stop_at_once(client, login) -> None:
    from foundation.db import transaction
    from policies.directory import disable_user

    headers = login("li.na")
    assert client.get("/me", headers=headers).status_code == 200
    with transaction(client.app.state.services.engine) as session:
        disable_user(session, "li.na")
    r = client.get("/me", headers=headers)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert (
        client.post(
            "/auth/token", data={"username": "li.na", "password": "correct horse battery staple"}
        ).status_code
        == 401
    )


def test_failed_logins_lock_the_account_and_are_audited(client, login, clock) -> None:
    for _ in range(5):
        r = client.post("/auth/token", data={"username": "wang.fang", "password": "nope"})
        assert r.status_code == 401
    # locked: even the right password is refused for a while
    assert (
        client.post("/auth/token", data={"username": "wang.fang", "password": PASSWORD}).status_code
        == 401
    )
    clock.advance(minutes=16)
    assert (
        client.post("/auth/token", data={"username": "wang.fang", "password": PASSWORD}).status_code
        == 200
    )
    log = client.get(
        "/audit?action=auth:login-failed&actor=wang.fang&limit=50", headers=login("qian.audit")
    ).json()["items"]
    assert len(log) == 6 and any(e["detail"]["locked"] for e in log)
    unknown = client.post("/auth/token", data={"username": "nobody", "password": "x"})
    assert unknown.status_code == 401 and unknown.json()["detail"] == r.json()["detail"]


def test_token_expiry_uses_the_clock(client, login, clock) -> None:
    headers = login("zhang.wei")
    clock.advance(minutes=16)
    r = client.get("/me", headers=headers)
    assert r.status_code == 401


def test_unknown_usernames_are_not_logged_as_typed(client, login) -> None:
    typed = "Pa55word-typed-in-the-wrong-box"
    assert client.post("/auth/token", data={"username": typed, "password": "x"}).status_code == 401
    assert client.post("/auth/token", data={"username": "", "password": "x"}).status_code in (
        401,
        422,
    )
    entries = client.get("/audit?action=auth:login-failed", headers=login("qian.audit")).json()
    assert typed not in str(entries)
    assert (
        entries["items"][0]["actor"] == "unknown" and entries["items"][0]["detail"]["username_hmac"]
    )


def test_a_password_change_revokes_earlier_tokens(client, login, clock) -> None:
    old = login("wang.fang")
    assert client.get("/me", headers=old).status_code == 200
    clock.advance(seconds=2)
    r = client.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": "a brand new password"},
        headers=old,
    )
    assert r.status_code == 200, r.text
    assert client.get("/me", headers=old).status_code == 401
    clock.advance(seconds=1)
    fresh = client.post(
        "/auth/token", data={"username": "wang.fang", "password": "a brand new password"}
    )
    assert fresh.status_code == 200
    token = {"Authorization": f"Bearer {fresh.json()['access_token']}"}
    assert client.get("/me", headers=token).status_code == 200


def test_one_address_spraying_usernames_is_throttled(client, clock) -> None:
    client.app.state.services.vault.settings.login_address_max_failures = 3
    for name in ("a.one", "b.two", "c.three"):
        assert (
            client.post("/auth/token", data={"username": name, "password": "x"}).status_code == 401
        )
    r = client.post("/auth/token", data={"username": "zhang.wei", "password": "whatever"})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert r.json()["type"] == "urn:archive-vault:too-many-failed-logins"
    clock.advance(seconds=301)
    assert (
        client.post("/auth/token", data={"username": "zhang.wei", "password": PASSWORD}).status_code
        == 200
    )


def _answers(client, username: str, n: int) -> tuple[list[float], list[tuple]]:
    """The delays the service decides and the answers it gives to ``n`` wrong passwords."""
    services = client.app.state.services
    delays: list[float] = []

    async def record(seconds: float) -> None:
        delays.append(seconds)

    services.sleep = record
    answers = []
    for i in range(n):
        r = client.post("/auth/token", data={"username": username, "password": f"guess-{i}"})
        # The request id is random for every request, known user or not.
        drop = ("date", "content-length", "x-request-id")
        headers = {k: v for k, v in r.headers.items() if k not in drop}
        answers.append((r.status_code, r.json(), sorted(headers.items())))
    return delays, answers


def test_unknown_names_get_the_schedule_and_answers_of_known_ones(client, clock) -> None:
    """No username enumeration: a known user's failures and an unknown name's look alike."""
    client.app.state.services.vault.settings.login_delay_seconds = 0.5
    known_delays, known = _answers(client, "wang.fang", 8)
    unknown_delays, unknown = _answers(client, "no.such.user", 8)
    assert known_delays == unknown_delays
    assert len(set(known_delays)) > 1  # the schedule does grow: the comparison is not vacuous
    assert known == unknown
    odd_delays, odd = _answers(client, "NUL\x00 not a name", 8)
    assert (odd_delays, odd) == (known_delays, known)
    # and after the lock has run out, both start again alike
    clock.advance(minutes=16)
    assert _answers(client, "wang.fang", 3) == _answers(client, "no.such.user", 3)


def test_a_token_issued_in_the_same_second_as_a_password_change_is_revoked(
    client, login, clock
) -> None:
    """Revocation does not depend on clocks: the clock does not move at all here."""
    import api.fastpath
    from tests.factories import archive

    old = login("zhang.wei")
    body = archive()
    body.pop("owner")
    created = client.post("/customers", json=body, headers=old)
    assert created.status_code == 201, created.text
    url = f"/customers/{created.json()['archive']['archive_no']}?groups=contact"
    assert client.get(url, headers=old).status_code == 200  # the token is in the fast path's cache
    r = client.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": "a brand new password"},
        headers=old,
    )
    assert r.status_code == 200, r.text
    fresh = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert client.get("/me", headers=old).status_code == 401
    served_fast: list[str] = []
    real = api.fastpath.read_content

    def spy(*args):
        served_fast.append(args[3])
        return real(*args)

    api.fastpath.read_content = spy
    try:
        refused = client.get(url, headers=old)
        assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
        assert served_fast, "the fast path did not take the request"
        assert client.get(url, headers=fresh).status_code == 200
    finally:
        api.fastpath.read_content = real
    assert client.get("/me", headers=fresh).json()["username"] == "zhang.wei"
    # the old password is gone, the new one works
    assert (
        client.post("/auth/token", data={"username": "zhang.wei", "password": PASSWORD}).status_code
        == 401
    )


def test_changing_ones_own_password_needs_the_current_one(client, login) -> None:
    headers = login("li.na")
    wrong = client.post(
        "/auth/password",
        json={"current_password": "not my password", "new_password": "a brand new password"},
        headers=headers,
    )
    assert wrong.status_code == 403
    assert client.get("/me", headers=headers).status_code == 200  # nothing changed
    weak = client.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": "tiny-pw"},
        headers=headers,
    )
    assert weak.status_code == 422 and "tiny-pw" not in weak.text
