"""Downloads never echo the uploader's Content-Type: an allow-list inline, the rest a file."""

from __future__ import annotations

import pytest

from tests.factories import archive


def _new(client, headers) -> str:
    body = archive()
    body.pop("owner", None)
    r = client.post("/customers", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["archive"]["archive_no"]


@pytest.mark.parametrize(
    ("sent", "served", "disposition"),
    [
        ("text/html", "application/octet-stream", "attachment"),
        ("image/svg+xml", "application/octet-stream", "attachment"),
        ("application/xhtml+xml; charset=utf-8", "application/octet-stream", "attachment"),
        ("application/javascript", "application/octet-stream", "attachment"),
        ("IMAGE/PNG", "image/png", "inline"),
        ("image/jpeg", "image/jpeg", "inline"),
        ("application/pdf", "application/pdf", "inline"),
        ("text/plain; charset=gbk", "text/plain; charset=utf-8", "inline"),
    ],
)
def test_download_types_come_from_an_allow_list(client, login, sent, served, disposition) -> None:
    h = login("zhang.wei")
    no = _new(client, h)
    up = client.post(
        f"/customers/{no}/attachments",
        files={"file": ("scan", b"<script>alert(1)</script>", sent)},
        headers=h,
    )
    assert up.status_code == 201, up.text
    r = client.get(f"/customers/{no}/attachments/{up.json()['uid']}", headers=h)
    assert r.status_code == 200 and r.content == b"<script>alert(1)</script>"
    assert r.headers["content-type"] == served
    assert r.headers["content-disposition"].startswith(f"{disposition}; filename*=UTF-8''scan")
    assert r.headers["content-security-policy"] == "sandbox"
    assert r.headers["x-content-type-options"] == "nosniff"
