"""An administrator alone becomes a reader of every request. ``compliance`` is given at
once ("a role that reads nothing"), even to the administrator's own account; since the
request search and request facts, compliance reads every request with its reason (which
people write customers' names into), recipient and visitor credential. DESIGN.md:
administrators never see content, directly or by becoming someone else. Fails while the
hole is open."""

from __future__ import annotations

from tests.api.test_workflow import _file, _new


def test_an_administrator_cannot_make_himself_a_reader_of_every_request(client, login) -> None:
    no = _new(client, login("zhang.wei"))
    _file(
        client,
        login("li.na"),
        kind="view",
        archives=[no],
        groups=["identity"],
        purpose="customer_service",
        reason="王小明来电，需回电",
    )
    adm = login("admin")
    granted = client.patch(
        "/users/admin", json={"roles": ["admin", "compliance"], "reason": "审计"}, headers=adm
    )
    search = client.get("/requests", params={"role": "all"}, headers=adm)
    assert granted.status_code != 200 or "compliance" not in granted.json()["roles"], granted.text
    assert search.status_code == 403, search.text
    assert "王小明" not in search.text
