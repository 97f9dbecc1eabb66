"""The inspection's walk (Art 14): each kind of tampering names its archive and kind, nothing else."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import date

import pytest
import sqlalchemy as sa

from tests.factories import SALES, archive
from vault.integrity import StoreWalk
from vault.models import (
    Archive,
    Attachment,
    AttachmentChunk,
    ContentHistory,
    Interaction,
    SealedGroup,
    table_of,
)
from vault.store import ArchiveStore

CANARY = "金丝雀值-88776655"


def _full(store: ArchiveStore) -> str:
    no = store.filing.create(
        archive(profile={"name": CANARY, "mobile_phone": "13800138000", "health": CANARY}),
        actor=SALES,
    ).archive_no
    store.archives.update(no, {"health": CANARY + "!"}, actor=SALES)
    store.records.add_interaction(
        no, occurred_on=date(2026, 2, 1), channel="call", text=CANARY, actor=SALES
    )
    store.records.add_attachment(
        no,
        filename=f"{CANARY}.txt",
        content_type="text/plain",
        stream=io.BytesIO(CANARY.encode() * 20_000),
        actor=SALES,
    )
    return no


def _flip(blob: bytes) -> bytes:
    raw = bytearray(blob)
    raw[-3] ^= 0x80
    return bytes(raw)


def _aid(conn: sa.Connection, no: str) -> int:
    a = table_of(Archive)
    return int(conn.execute(sa.select(a.c.id).where(a.c.archive_no == no)).scalar_one())


def _flip_column(model: type, column: str, key: Callable[[sa.Table, int], sa.ColumnElement]):
    def run(conn: sa.Connection, aid: int) -> None:
        t = table_of(model)
        row = conn.execute(sa.select(t).where(key(t, aid)).limit(1)).first()
        pk = [c for c in t.primary_key.columns]
        where = sa.and_(*(c == getattr(row, c.name) for c in pk))
        conn.execute(sa.update(t).where(where).values({column: _flip(getattr(row, column))}))

    return run


def _drop_group(conn: sa.Connection, aid: int) -> None:
    t = table_of(SealedGroup)
    conn.execute(sa.delete(t).where(t.c.archive_id == aid, t.c.group_name == "contact"))


def _drop_last_chunk(conn: sa.Connection, aid: int) -> None:
    f, k = table_of(Attachment), table_of(AttachmentChunk)
    att_id, n = conn.execute(sa.select(f.c.id, f.c.chunk_count).where(f.c.archive_id == aid)).one()
    conn.execute(sa.delete(k).where(k.c.attachment_id == att_id, k.c.seq == n - 1))


def _chunk_of(t: sa.Table, aid: int) -> sa.ColumnElement:
    f = table_of(Attachment)
    return t.c.attachment_id.in_(sa.select(f.c.id).where(f.c.archive_id == aid))


TAMPERING = {
    "dek": (_flip_column(Archive, "wrapped_dek", lambda t, aid: t.c.id == aid), "dek"),
    "manifest": (_flip_column(Archive, "manifest", lambda t, aid: t.c.id == aid), "manifest"),
    "group": (
        _flip_column(SealedGroup, "ciphertext", lambda t, aid: t.c.archive_id == aid),
        "group",
    ),
    "removed group": (_drop_group, "group"),
    "revision": (
        _flip_column(ContentHistory, "ciphertext", lambda t, aid: t.c.archive_id == aid),
        "revision",
    ),
    "interaction": (
        _flip_column(Interaction, "ciphertext", lambda t, aid: t.c.archive_id == aid),
        "interaction",
    ),
    "attachment": (
        _flip_column(Attachment, "meta_ct", lambda t, aid: t.c.archive_id == aid),
        "attachment",
    ),
    "chunk": (_flip_column(AttachmentChunk, "ciphertext", _chunk_of), "chunk"),
    "truncated": (_drop_last_chunk, "chunk"),
}


def test_a_clean_store_opens_every_kind(store: ArchiveStore) -> None:
    _full(store)
    result = StoreWalk(store.engine, store.envelope, batch=1).run()
    assert result.ok and result.archives == 1
    assert all(t.ok > 0 and t.failed == 0 for t in result.kinds.values()), result.kinds


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_tampering_names_the_archive_and_the_kind(store: ArchiveStore, case: str) -> None:
    good, bad, other = _full(store), _full(store), _full(store)
    tamper, kind = TAMPERING[case]
    with store.engine.begin() as conn:
        tamper(conn, _aid(conn, bad))
    seen: list[tuple[int, int]] = []
    result = StoreWalk(store.engine, store.envelope, batch=2).run(lambda d, t: seen.append((d, t)))
    assert seen == [(2, 3), (3, 3)]
    public = result.public()
    assert [f["archive_no"] for f in public["failing_archives"]] == [bad], public
    assert kind in public["failing_archives"][0]["kinds"]
    assert result.kinds[kind].failed >= 1
    text = json.dumps(public, ensure_ascii=False)
    assert CANARY not in text and "13800138000" not in text
    assert good not in text and other not in text
