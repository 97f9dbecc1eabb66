"""Notifications over HTTP: one's own only, marked read, and mailed through a local sink."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, select

from audit.events import AuditAction
from foundation.db import transaction
from foundation.settings import Settings
from policies.mail_delivery import deliver_due
from policies.models import Notification
from policies.roles import NotificationEvent
from tests.auditlog import entries
from tests.factories import archive
from tests.smtp_sink import Sink
from vault.models import User

URL = "https://vault.example.com"


@pytest.fixture
def smtp() -> Iterator[Sink]:
    with Sink() as sink:
        yield sink


@pytest.fixture
def settings(tmp_path: Path, smtp: Sink) -> Settings:
    """The vault's settings, with mail on through the in-process sink."""
    return Settings(
        data_dir=tmp_path / "var",
        expected_archives=1000,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_tls="none",
        smtp_sender="vault@example.com",
        public_url=URL,
    )


def _notify(client, recipient: str, n: int, *, at=None) -> list[int]:
    services = client.app.state.services
    ids = []
    with transaction(services.engine) as s:
        for i in range(n):
            services.workflow.notify(
                s,
                recipient,
                f"R-{i}",
                NotificationEvent.APPROVED,
                f"request R-{i} approved",
                at or services.clock(),
            )
        s.flush()
        ids = [
            n.id
            for n in s.exec(select(Notification).where(Notification.recipient == recipient)).all()
        ]
    return sorted(ids)


def test_own_notifications_newest_first_with_unread_and_paging(client, login) -> None:
    mine = _notify(client, "li.na", 5)
    _notify(client, "wang.fang", 2)
    li = login("li.na")
    r = client.get("/notifications", headers=li)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [n["id"] for n in body["items"]] == mine[::-1]
    assert (body["unread"], body["total"], body["more"]) == (5, 5, False)
    page = client.get("/notifications?limit=2&offset=1", headers=li).json()
    assert [n["id"] for n in page["items"]] == mine[::-1][1:3] and page["more"]
    assert client.post(f"/notifications/{mine[0]}/read", headers=li).status_code == 200
    unread = client.get("/notifications?unread=true", headers=li).json()
    assert [n["id"] for n in unread["items"]] == mine[:0:-1] and unread["unread"] == 4
    # the requests page still carries the caller's notifications inline
    inline = client.get("/requests", headers=li).json()["notifications"]
    assert len(inline) == 5 and all(n["event"] == "approved" for n in inline)


def test_mark_read_is_idempotent_and_read_all_marks_only_ones_own(client, login, clock) -> None:
    mine = _notify(client, "li.na", 3)
    theirs = _notify(client, "wang.fang", 2)
    li = login("li.na")
    first = client.post(f"/notifications/{mine[1]}/read", headers=li).json()
    clock.advance(minutes=5)
    again = client.post(f"/notifications/{mine[1]}/read", headers=li).json()
    assert first["read_at"] is not None and again["read_at"] == first["read_at"]
    r = client.post("/notifications/read-all", headers=li)
    assert r.status_code == 200 and r.json() == {"marked": 2}
    assert client.post("/notifications/read-all", headers=li).json() == {"marked": 0}
    wang = client.get("/notifications?unread=true", headers=login("wang.fang")).json()
    assert sorted(n["id"] for n in wang["items"]) == theirs


def test_someone_elses_notification_is_an_unknown_id(client, login) -> None:
    """An insider marking a colleague's notification learns nothing: it is a plain 404."""
    theirs = _notify(client, "wang.fang", 1)[0]
    li = login("li.na")
    other = client.post(f"/notifications/{theirs}/read", headers=li)
    unknown = client.post(f"/notifications/{theirs + 1000}/read", headers=li)
    assert other.status_code == unknown.status_code == 404
    assert other.json()["detail"].replace(str(theirs), "N") == unknown.json()["detail"].replace(
        str(theirs + 1000), "N"
    )
    wang = client.get("/notifications", headers=login("wang.fang")).json()
    assert wang["items"][0]["read_at"] is None  # nothing changed
    listed = client.get("/notifications", headers=login("admin")).json()
    assert listed["items"] == [] and listed["total"] == 0  # not even an administrator's


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/notifications?limit=0"),
        ("get", "/notifications?limit=201"),
        ("get", "/notifications?offset=-1"),
        ("get", "/notifications?offset=1000001"),
        ("get", "/notifications?unread=perhaps"),
        ("get", "/notifications?limit=ten"),
        ("post", "/notifications/abc/read"),
        ("post", "/notifications/0/read"),
        ("post", "/notifications/-3/read"),
        ("post", "/notifications/99999999999999999999/read"),
        ("post", "/notifications/2147483648/read"),  # past PostgreSQL's integer column
    ],
)
def test_bad_ids_and_parameters_are_422(client, login, method, path) -> None:
    _notify(client, "li.na", 1)
    r = getattr(client, method)(path, headers=login("li.na"))
    assert r.status_code == 422, r.text
    assert client.get("/notifications?unread=true", headers=login("li.na")).json()["unread"] == 1


def test_notifications_need_a_login(client) -> None:
    assert client.get("/notifications").status_code == 401
    assert client.post("/notifications/read-all").status_code == 401


def _email_notes(client, who) -> list[dict]:
    items = client.get("/notifications", headers=who).json()["items"]
    return [n for n in items if n["event"] == NotificationEvent.EMAIL_CHANGED]


def test_people_set_their_own_address_and_administrators_only_clear_it(
    client, login, api_vault
) -> None:
    """Whoever sets an address reads that person's notices: each person sets their own
    (PUT /me/email); an administrator only clears one, and the holder is told."""
    adm, li = login("admin"), login("li.na")
    r = client.put("/me/email", json={"email": " Li.Na@Corp.EXAMPLE.com"}, headers=li)
    assert r.status_code == 200, r.text
    assert r.json() == {"username": "li.na", "email": "Li.Na@corp.example.com"}
    assert _email_notes(client, li) == []  # she set it herself: nothing to tell
    # an administrator sets no one's address, not even through POST /users
    for bad in ("me@evil.example.com", "not-an-address"):
        r = client.patch("/users/li.na", json={"email": bad}, headers=adm)
        assert r.status_code == 422 and "PUT /me/email" in r.json()["detail"], r.text
    r = client.post(
        "/users",
        json={"username": "new.one", "roles": ["admin"], "email": "new.one@corp.example.com"},
        headers=adm,
    )
    assert r.status_code == 422 and "PUT /me/email" in r.json()["detail"], r.text
    # nor does a colleague
    r = client.patch("/users/li.na", json={"email": None}, headers=login("zhang.wei"))
    assert r.status_code == 403
    with Session(api_vault.engine) as s:
        assert s.exec(select(User.email).where(User.username == "li.na")).one() == (
            "Li.Na@corp.example.com"
        )
        assert s.exec(select(User).where(User.username == "new.one")).first() is None
    assert client.patch("/users/nobody", json={"email": None}, headers=adm).status_code == 404
    # clearing is allowed, and the holder hears of it in the vault (without an address)
    r = client.patch("/users/li.na", json={"email": None}, headers=adm)
    assert r.status_code == 200 and r.json()["email"] is None
    notes = _email_notes(client, li)
    assert len(notes) == 1 and "admin" in notes[0]["message"], notes
    assert "@" not in notes[0]["message"]
    ops = [
        (e.outcome, e.actor, e.detail)
        for e in entries(client.app.state.services.audit)
        if e.action == AuditAction.USER_CHANGE and e.detail.get("op") == "set_email"
    ]
    assert [(o, a, d["user"], d.get("email")) for o, a, d in ops] == [
        ("allowed", "li.na", "li.na", "set"),
        ("denied", "admin", "li.na", None),
        ("denied", "admin", "li.na", None),
        ("allowed", "admin", "li.na", "cleared"),
    ]
    assert not any("corp.example.com" in str(d) for _, _, d in ops)


def test_a_denial_is_mailed_with_a_link_and_no_customer_content(
    client, login, smtp, api_vault, clock
) -> None:
    body = archive()
    body.pop("owner")
    r = client.post("/customers", json=body, headers=login("zhang.wei"))
    assert r.status_code == 201, r.text
    no = r.json()["archive"]["archive_no"]
    li = login("li.na")
    assert client.put("/me/email", json={"email": "li.na@corp.example.com"}, headers=li).is_success
    req = client.post(
        "/requests",
        json={
            "kind": "view",
            "archives": [no],
            "groups": ["contact"],
            "purpose": "customer_service",
            "reason": "王小明来电，需回电",
        },
        headers=li,
    ).json()
    r = client.post(
        f"/requests/{req['id']}/deny",
        json={"reason": "王小明已结清，无需回电"},
        headers=login("head.one"),
    )
    assert r.status_code == 200, r.text
    result = deliver_due(api_vault.engine, api_vault.settings, clock.now)
    assert len(result.sent) == 2  # filed, denied
    denied = [m for m in smtp.received if "denied" in str(m["Subject"])]
    assert len(denied) == 1 and str(denied[0]["To"]) == "li.na@corp.example.com"
    text = denied[0].get_content() + str(denied[0]["Subject"])
    assert f"{URL}/requests/{req['id']}" in text and "read the reason" in text
    for content in ("王小明", "13800138000", "星河", "回电", "结清"):
        assert content not in text
