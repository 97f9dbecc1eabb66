"""Request facts as an outsider sees them. A visitor (role external) may not list the
customer list (no ``list`` line in policy.csv), yet filing a view request for a
guessable archive number answers with that archive's owner, grade, category,
department and custodian in ``facts``: an outsider enumerates the customer list
(which clients are grade A, who looks after them). Fails while the hole is open."""

from __future__ import annotations

import pytest

from foundation.db import transaction
from policies.directory import add_user
from tests.api.conftest import _HASH
from tests.api.test_workflow import _new


@pytest.fixture
def visitor(api_vault):
    with transaction(api_vault.engine) as session:
        user = add_user(
            session,
            username="ext.lawyer",
            roles=["external"],
            department="",
            clearance="internal",
            external=True,
            credential_ref="介绍信-2026-001",
        )
        user.password_hash = _HASH
        session.add(user)


def test_a_visitor_learns_nothing_of_an_archive_it_may_not_list(client, login, visitor) -> None:
    no = _new(client, login("zhang.wei"), grade="A", category="special", contacts=["li.na"])
    ext = login("ext.lawyer")
    assert client.get("/customers", headers=ext).status_code == 403
    r = client.post(
        "/requests",
        json={
            "kind": "view",
            "archives": [no],
            "groups": ["identity"],
            "purpose": "customer_service",
            "reason": "律师函核对",
        },
        headers=ext,
    )
    assert r.status_code == 201, r.text
    shown = r.json()["facts"]["archives"][0]
    told = {k: shown.get(k) for k in ("owner", "grade", "category", "department", "custodian")}
    assert not any(told.values()), told
