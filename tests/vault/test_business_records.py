"""Interactions and attachments filed in an archive."""

from __future__ import annotations

import io
from datetime import date

import pytest
from sqlmodel import Session, select

from tests.factories import SALES, archive
from vault.errors import (
    DecryptionFailed,
    ValidationFailed,
)
from vault.models import AttachmentChunk
from vault.store import ArchiveStore


def test_interactions(store: ArchiveStore) -> None:
    meta = store.filing.create(archive(), actor=SALES)
    store.records.add_interaction(
        meta.archive_no,
        occurred_on=date(2026, 2, 1),
        channel="revisit",
        text="回访：客户满意",
        actor=SALES,
    )
    with pytest.raises(ValidationFailed, match="channel"):
        store.records.add_interaction(
            meta.archive_no, occurred_on="2026-02-01", channel="telegram", text="x", actor=SALES
        )
    with pytest.raises(ValidationFailed, match="future"):
        store.records.add_interaction(
            meta.archive_no, occurred_on="2999-02-01", channel="call", text="x", actor=SALES
        )
    records = store.records.interactions(meta.archive_no, actor=SALES)
    assert [(r["channel"], r["text"], r["author"]) for r in records] == [
        ("revisit", "回访：客户满意", "zhang.wei")
    ]


def test_attachments_stream_in_chunks_and_detect_tampering(store: ArchiveStore, vault) -> None:
    payload = bytes(range(256)) * 1000  # 256 kB → 4 chunks of 64 kB
    meta = store.filing.create(archive(), actor=SALES)
    att = store.records.add_attachment(
        meta.archive_no,
        filename="scan.png",
        content_type="image/png",
        stream=io.BytesIO(payload),
        actor=SALES,
    )
    assert att["chunks"] == 4
    _, chunks = store.records.open_attachment(meta.archive_no, att["uid"], actor=SALES)
    assert b"".join(chunks) == payload
    with Session(vault.engine) as s:  # drop the last chunk: truncation must be caught
        last = s.exec(select(AttachmentChunk).where(AttachmentChunk.seq == 3)).one()
        s.delete(last)
        s.commit()
    _, chunks = store.records.open_attachment(meta.archive_no, att["uid"], actor=SALES)
    with pytest.raises(DecryptionFailed):
        b"".join(chunks)


def test_attachment_size_cap_leaves_nothing(store: ArchiveStore) -> None:
    store.settings.max_attachment_bytes = 100_000
    meta = store.filing.create(archive(), actor=SALES)
    with pytest.raises(ValidationFailed, match="larger than"):
        store.records.add_attachment(
            meta.archive_no,
            filename="big.bin",
            content_type="application/octet-stream",
            stream=io.BytesIO(b"x" * 200_000),
            actor=SALES,
        )
    assert store.records.attachments(meta.archive_no, actor=SALES) == []
