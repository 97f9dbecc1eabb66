"""PATCH /customers/{no} with consent: sensitive groups are written only under consent
that covers them, and a newer consent record must keep covering what is stored."""

from __future__ import annotations

from tests.factories import ALL_GROUPS, archive, consent

NO_SENSITIVE = consent(sensitive=[])
HEALTH_TOO = consent(sensitive=["health"])


def _archive_without_sensitive_consent(client, headers) -> str:
    body = archive(profile={"name": "王小明", "mobile_phone": "13800138000"}, consent=NO_SENSITIVE)
    body.pop("owner", None)
    r = client.post("/customers", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["archive"]["archive_no"]


def _health(client, headers, no: str) -> dict:
    r = client.get(f"/customers/{no}", params={"groups": "health"}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["content"]


def _actions(client, login, no: str) -> list[str]:
    log = client.get(f"/audit?archive={no}", headers=login("qian.audit")).json()["items"]
    return [e["action"] for e in log]


def test_a_sensitive_group_without_covering_consent_is_refused(client, login) -> None:
    h = login("zhang.wei")
    no = _archive_without_sensitive_consent(client, h)
    r = client.patch(f"/customers/{no}", json={"profile": {"health": "高血压"}}, headers=h)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["type"] == "urn:archive-vault:consent-missing"
    assert "health" in problem["detail"] and "高血压" not in r.text
    assert _health(client, h, no) == {}


def test_consent_in_the_same_patch_that_does_not_cover_the_group_is_refused(client, login) -> None:
    h = login("zhang.wei")
    no = _archive_without_sensitive_consent(client, h)
    newer = {**NO_SENSITIVE, "notice": "隐私告知书 v4"}  # newer notice, still no sensitive groups
    r = client.patch(
        f"/customers/{no}", json={"profile": {"health": "高血压"}, "consent": newer}, headers=h
    )
    assert r.status_code == 422, r.text
    assert r.json()["type"] == "urn:archive-vault:consent-missing"
    assert _health(client, h, no) == {}


def test_consent_that_covers_the_group_lets_the_same_patch_write_it(client, login) -> None:
    h = login("zhang.wei")
    no = _archive_without_sensitive_consent(client, h)
    r = client.patch(
        f"/customers/{no}", json={"profile": {"health": "高血压"}, "consent": HEALTH_TOO}, headers=h
    )
    assert r.status_code == 200, r.text
    assert _actions(client, login, no)[:2] == ["archive:update", "archive:consent-record"]
    assert _health(client, h, no) == {"health": {"health": "高血压"}}
    # And with that consent on record, a later write needs no consent in the request.
    r = client.patch(f"/customers/{no}", json={"profile": {"health": "良好"}}, headers=h)
    assert r.status_code == 200, r.text
    assert _health(client, h, no) == {"health": {"health": "良好"}}


def test_a_group_outside_consent_groups_is_refused_too(client, login) -> None:
    h = login("zhang.wei")
    body = archive(
        profile={"name": "王小明"}, consent=consent(groups=["identity", "contact"], sensitive=[])
    )
    body.pop("owner", None)
    no = client.post("/customers", json=body, headers=h).json()["archive"]["archive_no"]
    r = client.patch(f"/customers/{no}", json={"profile": {"notes": "常客"}}, headers=h)
    assert r.status_code == 422 and r.json()["type"] == "urn:archive-vault:consent-missing"
    assert "notes" in r.json()["detail"]
    r = client.patch(
        f"/customers/{no}",
        json={"profile": {"notes": "常客"}, "consent": consent(groups=ALL_GROUPS, sensitive=[])},
        headers=h,
    )
    assert r.status_code == 200, r.text


def test_newer_consent_that_no_longer_covers_stored_content_is_refused(client, login) -> None:
    h = login("zhang.wei")
    no = _archive_without_sensitive_consent(client, h)
    r = client.patch(
        f"/customers/{no}", json={"profile": {"health": "高血压"}, "consent": HEALTH_TOO}, headers=h
    )
    assert r.status_code == 200, r.text
    # Dropping health from the sensitive consent while health is stored: withdraw instead.
    r = client.patch(f"/customers/{no}", json={"consent": NO_SENSITIVE}, headers=h)
    assert r.status_code == 422, r.text
    assert "health" in r.json()["detail"] and "withdraw" in r.json()["detail"]
    assert "高血压" not in r.text
    assert _health(client, h, no) == {"health": {"health": "高血压"}}
    # The record in force is still the one that covers health: a write to it goes through.
    r = client.patch(f"/customers/{no}", json={"profile": {"health": "良好"}}, headers=h)
    assert r.status_code == 200, r.text
