"""Bad input at the HTTP door: a past retention date, control and bidi characters (422)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.factories import archive

BEIJING = ZoneInfo("Asia/Shanghai")


def _create(client, headers, **over):
    body = archive(**over)
    body.pop("owner", None)
    return client.post("/customers", json=body, headers=headers)


def test_an_archive_is_not_filed_with_its_retention_already_past(client, login) -> None:
    h = login("zhang.wei")
    today = datetime.now(UTC).astimezone(BEIJING).date()
    r = _create(client, h, retention_until=(today - timedelta(days=1)).isoformat())
    assert r.status_code == 422
    assert "retention_until" in r.json()["detail"] and "past" in r.json()["detail"]
    assert client.get("/customers", headers=h).json()["total"] == 0
    assert _create(client, h, retention_until=today.isoformat()).status_code == 201


@pytest.mark.parametrize("bad", ["\x00", "\u202e", "\u2067", "\x07"])
def test_free_text_with_controls_or_bidi_overrides_is_refused(client, login, bad) -> None:
    h = login("zhang.wei")
    no = _create(client, h).json()["archive"]["archive_no"]
    cases = [
        ("PATCH", f"/customers/{no}", {"profile": {"company": f"星河{bad}地产"}}, "company"),
        (
            "POST",
            f"/customers/{no}/interactions",
            {"occurred_on": "2026-01-02", "channel": "call", "text": f"回访{bad}记录"},
            "interaction text",
        ),
        (
            "POST",
            "/requests",
            {
                "kind": "view",
                "archives": [no],
                "purpose": "revisit",
                "reason": f"回访{bad}",
                "groups": ["contact"],
            },
            "reason",
        ),
    ]
    for method, url, body, field in cases:
        r = client.request(method, url, json=body, headers=h)
        assert r.status_code == 422, (url, r.text)
        assert field in r.text and bad not in r.text, url
    up = client.post(  # the name as a form field: clients %-escape controls in filename=""
        f"/customers/{no}/attachments",
        files={"file": ("scan.pdf", b"MZ", "application/pdf")},
        data={"filename": f"invoice{bad}fdp.exe"},
        headers=h,
    )
    assert up.status_code == 422 and "filename" in up.json()["detail"]
