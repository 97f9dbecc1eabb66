"""State for the officer's, compliance's and the administrator's pages, set up through the
API as people would: archives filed by their owner, a loan walked through its chain."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.factories import archive


def new_archive(client: Any, headers: dict[str, str], **over: Any) -> str:
    body = archive(**over)
    body.pop("owner", None)
    r = client.post("/customers", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["archive"]["archive_no"])


def loan(client: Any, login: Any, no: str, *, hours: int = 24) -> str:
    """li.na borrows ``no``: filed, signed by head.one and chen.jing (chains.toml), confirmed."""
    li = login("li.na")
    r = client.post(
        "/requests",
        headers=li,
        json={
            "kind": "loan",
            "archives": [no],
            "groups": ["contact"],
            "purpose": "contract_follow_up",
            "reason": "签约",
            "hours": hours,
            "material": "客户档案复印件",
            "copies": 1,
        },
    )
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    for signer in ("head.one", "chen.jing"):
        done = client.post(f"/requests/{uid}/approve", json={}, headers=login(signer))
        assert done.status_code == 200, done.text
    lines = client.get("/loans", headers=li).json()["items"]
    line = next(i["id"] for i in lines if i["archives"] == [no] and not i["confirmed_at"])
    assert client.post(f"/loans/{line}/confirm", headers=li).status_code == 200
    return str(line)


def overdue_and_open(client: Any, login: Any, clock: Any) -> tuple[str, str]:
    """Two loans of li.na's: the first falls overdue (the sweep flags it), the second not."""
    no = new_archive(client, login("zhang.wei"))
    late = loan(client, login, no, hours=2)
    on_time = loan(client, login, no, hours=72)
    clock.advance(hours=3)
    client.app.state.services.sweep()
    return late, on_time


def past_retention(client: Any, login: Any, clock: Any) -> str:
    """An archive whose retention runs out tomorrow, three days ago."""
    tomorrow = (clock.now + timedelta(days=1)).date().isoformat()
    no = new_archive(client, login("zhang.wei"), retention_until=tomorrow)
    clock.advance(days=3)
    return no
