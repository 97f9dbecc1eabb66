"""An id the caller may not see is answered exactly as an id that does not exist.

Each pair of responses is compared byte for byte (status, body, the headers
that could differ), with the two ids swapped for a placeholder: the only
difference allowed is the id the caller typed.
"""

from __future__ import annotations

from tests.factories import archive

HEADERS = ("content-type", "content-length", "www-authenticate")


def _new(client, headers) -> str:
    body = archive()
    body.pop("owner", None)
    body.pop("department", None)  # the filer's own department
    r = client.post("/customers", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["archive"]["archive_no"]


def _unknown_like(uid: str) -> str:
    """An id of the same shape and length that no row has."""
    prefix, _, _ = uid.rpartition("-")
    return f"{prefix}-{'0' * (len(uid) - len(prefix) - 1)}"


def _same(client, method: str, real: str, fake: str, url: str, headers, body=None) -> int:
    a = client.request(method, url.format(id=real), headers=headers, json=body)
    b = client.request(method, url.format(id=fake), headers=headers, json=body)
    assert a.status_code == b.status_code, (url, a.text, b.text)
    assert a.content.replace(real.encode(), b"<id>") == b.content.replace(fake.encode(), b"<id>")
    for name in HEADERS:
        assert a.headers.get(name) == b.headers.get(name), (url, name)
    return a.status_code


def _view_request(client, login) -> tuple[str, str]:
    no = _new(client, login("zhang.wei"))
    r = client.post(
        "/requests",
        headers=login("li.na"),
        json={
            "kind": "view",
            "archives": [no],
            "groups": ["contact"],
            "purpose": "revisit",
            "reason": "回访",
            "hours": 8,
        },
    )
    assert r.status_code == 201, r.text
    return no, r.json()["id"]


def test_a_request_you_may_not_see_is_answered_as_an_unknown_one(client, login) -> None:
    _, uid = _view_request(client, login)
    fake = _unknown_like(uid)
    # wang.fang (another department's salesperson) and head.two (not this department's
    # head) may neither see nor sign li.na's request.
    for outsider in ("wang.fang", "head.two"):
        h = login(outsider)
        assert _same(client, "GET", uid, fake, "/requests/{id}", h) == 404
        assert _same(client, "POST", uid, fake, "/requests/{id}/approve", h, {}) == 404
        assert _same(client, "POST", uid, fake, "/requests/{id}/deny", h, {"reason": "不"}) == 404
        assert _same(client, "POST", uid, fake, "/requests/{id}/withdraw", h) == 404
    # Those who may see it still do, and the hidden attempts were audited as denied.
    assert client.get(f"/requests/{uid}", headers=login("li.na")).status_code == 200
    assert client.get(f"/requests/{uid}", headers=login("head.one")).status_code == 200
    assert client.get(f"/requests/{uid}", headers=login("qian.audit")).status_code == 200
    log = client.get(
        "/audit", params={"actor": "wang.fang", "outcome": "denied"}, headers=login("qian.audit")
    ).json()["items"]
    assert {e["action"] for e in log} == {"request:approve", "request:deny", "request:withdraw"}
    assert len(log) == 6 and all(e["archives"] == [] for e in log)


def test_a_loan_you_may_not_see_is_answered_as_an_unknown_one(client, login) -> None:
    no = _new(client, login("zhang.wei"))
    r = client.post(
        "/requests",
        headers=login("li.na"),
        json={
            "kind": "loan",
            "archives": [no],
            "groups": ["contact"],
            "purpose": "contract_follow_up",
            "reason": "签约",
            "hours": 24,
            "material": "客户档案复印件",
            "copies": 1,
        },
    )
    assert r.status_code == 201, r.text
    for signer in ("head.one", "chen.jing"):
        ok = client.post(f"/requests/{r.json()['id']}/approve", json={}, headers=login(signer))
        assert ok.status_code == 200, ok.text
    (loan,) = client.get("/loans", headers=login("chen.jing")).json()["items"]
    uid, fake = loan["id"], _unknown_like(loan["id"])
    outsider = login("wang.fang")
    assert _same(client, "POST", uid, fake, "/loans/{id}/confirm", outsider) == 404
    assert _same(client, "POST", uid, fake, "/loans/{id}/return", outsider) == 404
    assert client.post(f"/loans/{uid}/confirm", headers=login("li.na")).status_code == 200


def test_export_and_attachment_ids_say_nothing_either(client, login) -> None:
    _, uid = _view_request(client, login)
    fake = _unknown_like(uid)
    body = {"request": "{id}", "format": "json"}
    a = client.post("/exports", json={**body, "request": uid}, headers=login("wang.fang"))
    b = client.post("/exports", json={**body, "request": fake}, headers=login("wang.fang"))
    assert a.status_code == b.status_code == 403
    assert a.content.replace(uid.encode(), b"<id>") == b.content.replace(fake.encode(), b"<id>")
    # An attachment of an archive wang.fang cannot read, asked for through her own archive.
    theirs, mine = _new(client, login("zhang.wei")), _new(client, login("wang.fang"))
    up = client.post(
        f"/customers/{theirs}/attachments",
        files={"file": ("a.txt", b"secret", "text/plain")},
        headers=login("zhang.wei"),
    )
    att = up.json()["uid"]
    missing = "0" * 32
    url = f"/customers/{mine}/attachments/{{id}}"
    assert _same(client, "GET", att, missing, url, login("wang.fang")) == 404
    url = f"/customers/{theirs}/attachments/{{id}}"
    assert _same(client, "GET", att, missing, url, login("wang.fang")) == 403
