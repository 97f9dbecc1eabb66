"""Attachment uploads: nothing read before the caller is allowed, nothing on disk, quotas."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.api.test_customers import _new
from vault.models import Attachment, AttachmentChunk, UploadQuota

CANARY = b"CANARY-UPLOAD-7f3a9c-\xe9\x87\x91\xe4\xb8\x9d\xe9\x9b\x80-"
PIECE = 64 * 1024
BOUNDARY = "vault-test-boundary"


def _rows(client, model) -> int:
    engine = client.app.state.services.engine
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(model.__table__)).scalar_one()


def _multipart_head(name: str = "合同.pdf") -> bytes:
    return (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
    ).encode()


def _multipart_tail() -> bytes:
    return f"\r\n--{BOUNDARY}--\r\n".encode()


class Body:
    """A request body produced piece by piece, recording how much the server pulled."""

    def __init__(self, pieces: int, *, multipart: bool = True, on_piece=None) -> None:
        self.pieces, self.multipart, self.on_piece = pieces, multipart, on_piece
        self.pulled = 0

    def payload(self) -> bytes:
        data = (CANARY * (PIECE // len(CANARY) + 1))[:PIECE] * self.pieces
        return data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.multipart:
            self.pulled += 1
            yield _multipart_head()
        for i in range(self.pieces):
            if self.on_piece is not None:
                self.on_piece(i)
            self.pulled += 1
            yield (CANARY * (PIECE // len(CANARY) + 1))[:PIECE]
        if self.multipart:
            self.pulled += 1
            yield _multipart_tail()


def _send(client, url: str, body: Body, headers: dict[str, str]) -> httpx.Response:
    """POST through the app in this thread's own event loop, body streamed lazily."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await c.post(url, content=body, headers=headers)

    return asyncio.run(go())


def _multipart_headers(auth: dict[str, str] | None = None) -> dict[str, str]:
    return {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", **(auth or {})}


def test_an_upload_without_a_token_is_refused_before_its_body_is_read(client, login) -> None:
    no = _new(client, login("zhang.wei"))
    url = f"/customers/{no}/attachments"
    body = Body(64)
    r = _send(client, url, body, _multipart_headers())
    assert r.status_code == 401 and body.pulled == 0
    body = Body(64)
    r = _send(client, url, body, _multipart_headers({"Authorization": "Bearer forged.token.x"}))
    assert r.status_code == 401 and body.pulled == 0
    # Allowed to authenticate but not to add to this archive: still nothing read.
    body = Body(64)
    r = _send(client, url, body, _multipart_headers(login("wang.fang")))
    assert r.status_code == 403 and body.pulled == 0
    # A declared length beyond the limit is refused at once, token or not.
    r = client.post(
        url,
        content=b"x",
        headers={**_multipart_headers(), "Content-Length": str(2**40)},
    )
    assert r.status_code == 413
    assert _rows(client, Attachment) == 0


def _plaintext_under(directory: Path) -> list[str]:
    """Files under ``directory`` holding the canary, including open but deleted ones."""
    found = []
    for path in directory.rglob("*"):
        if path.is_file() and CANARY in path.read_bytes():
            found.append(str(path))
    fds = Path("/proc/self/fd")
    if fds.is_dir():
        for fd in fds.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith(str(directory)):
                try:
                    if CANARY in Path(fd).read_bytes():
                        found.append(target)
                except OSError:
                    continue
    return found


def test_an_upload_never_reaches_a_temporary_file(client, login, tmp_path, monkeypatch) -> None:
    watched = tmp_path / "tmp"
    watched.mkdir()
    monkeypatch.setenv("TMPDIR", str(watched))
    monkeypatch.setattr(tempfile, "tempdir", str(watched))
    h = login("zhang.wei")
    no = _new(client, h)
    seen: list[str] = []

    def look(i: int) -> None:
        if i in (24, 47):  # well past any in-memory spooling threshold (1 MiB)
            seen.extend(_plaintext_under(watched))

    body = Body(48, on_piece=look)
    r = _send(client, f"/customers/{no}/attachments", body, _multipart_headers(h))
    assert r.status_code == 201, r.text
    assert seen == [] and _plaintext_under(watched) == []
    got = client.get(f"/customers/{no}/attachments/{r.json()['uid']}", headers=h)
    assert got.status_code == 200 and got.content == body.payload()
    assert (
        "合同.pdf" in got.headers["content-disposition"]
        or "%E5%90%88" in (got.headers["content-disposition"])
    )


def test_a_raw_body_upload_round_trips(client, login) -> None:
    h = login("zhang.wei")
    no = _new(client, h)
    payload = bytes(range(256)) * 1000 + CANARY
    r = client.post(
        f"/customers/{no}/attachments",
        params={"filename": "扫描件.png"},
        content=payload,
        headers={**h, "Content-Type": "image/png"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["size"] == len(payload)
    got = client.get(f"/customers/{no}/attachments/{r.json()['uid']}", headers=h)
    assert got.status_code == 200 and got.content == payload
    assert got.headers["content-type"].startswith("image/png")
    empty = client.post(
        f"/customers/{no}/attachments?filename=empty.txt",
        content=b"",
        headers={**h, "Content-Type": "text/plain"},
    )
    assert empty.status_code == 201
    got = client.get(f"/customers/{no}/attachments/{empty.json()['uid']}", headers=h)
    assert got.status_code == 200 and got.content == b""


def test_an_oversize_upload_is_refused_while_streaming_and_stores_nothing(
    client, login, api_vault
) -> None:
    api_vault.settings.max_attachment_bytes = 5 * PIECE
    h = login("zhang.wei")
    no = _new(client, h)
    body = Body(40)
    r = _send(client, f"/customers/{no}/attachments", body, _multipart_headers(h))
    assert r.status_code == 413, r.text
    assert r.json()["type"] == "urn:archive-vault:payload-too-large"
    assert body.pulled < 40  # refused as soon as it passed the limit
    assert _rows(client, Attachment) == 0 and _rows(client, AttachmentChunk) == 0
    raw = client.post(
        f"/customers/{no}/attachments?filename=big.bin",
        content=b"x" * (6 * PIECE),
        headers={**h, "Content-Type": "application/octet-stream"},
    )
    assert raw.status_code == 413
    assert _rows(client, Attachment) == 0 and _rows(client, AttachmentChunk) == 0
    # The bytes of refused uploads do not count against the day's quota.
    engine = client.app.state.services.engine
    with engine.connect() as conn:
        used = conn.execute(sa.select(sa.func.sum(UploadQuota.__table__.c.used))).scalar()
    assert not used


def test_the_daily_quota_is_enforced_and_stores_nothing(client, login, api_vault, clock) -> None:
    api_vault.settings.upload_quota_bytes_per_day = 40 * PIECE
    api_vault.settings.max_attachment_bytes = 64 * PIECE
    h = login("zhang.wei")
    no = _new(client, h)
    url = f"/customers/{no}/attachments"
    first = _send(client, url, Body(30), _multipart_headers(h))
    assert first.status_code == 201, first.text
    second = _send(client, url, Body(30), _multipart_headers(h))  # streams past the quota
    assert second.status_code == 429, second.text
    assert second.json()["type"] == "urn:archive-vault:upload-quota-exceeded"
    assert "quota" in second.json()["detail"]
    assert _rows(client, Attachment) == 1
    assert len(client.get(url, headers=h).json()) == 1
    # A raw body whose declared length passes the quota is refused before it is read.
    raw = client.post(
        f"{url}?filename=x.bin",
        content=b"y" * (20 * PIECE),
        headers={**h, "Content-Type": "application/octet-stream"},
    )
    assert raw.status_code == 429
    # Another user's quota is their own; the next day starts again.
    other = _send(client, url, Body(30), _multipart_headers(login("head.one")))
    assert other.status_code in (201, 403)
    clock.advance(days=1)
    assert _send(client, url, Body(30), _multipart_headers(login("zhang.wei"))).status_code == 201


def test_a_malformed_or_incomplete_multipart_body_stores_nothing(client, login) -> None:
    h = login("zhang.wei")
    no = _new(client, h)
    url = f"/customers/{no}/attachments"
    cut = _multipart_head() + b"partial content, no closing boundary"
    r = client.post(url, content=cut, headers=_multipart_headers(h))
    assert r.status_code == 422, r.text
    odd = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="other"\r\n\r\nx\r\n'
        f"--{BOUNDARY}--\r\n"
    ).encode()
    assert client.post(url, content=odd, headers=_multipart_headers(h)).status_code == 422
    no_boundary = client.post(
        url, content=b"x", headers={**h, "Content-Type": "multipart/form-data"}
    )
    assert no_boundary.status_code == 400
    assert _rows(client, Attachment) == 0 and _rows(client, AttachmentChunk) == 0


@pytest.mark.parametrize("name", ["a\x00b.txt", "x" * 256])
def test_bad_file_names_are_refused(client, login, name) -> None:
    h = login("zhang.wei")
    no = _new(client, h)
    r = client.post(
        f"/customers/{no}/attachments",
        params={"filename": name},
        content=b"data",
        headers={**h, "Content-Type": "text/plain"},
    )
    assert r.status_code == 422
    assert _rows(client, Attachment) == 0
