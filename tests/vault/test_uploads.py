"""The daily upload quota is counted atomically in the database, even by parallel writers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from foundation.db import transaction
from tests.factories import SALES, archive
from vault.models import Attachment, AttachmentChunk
from vault.store import ArchiveStore
from vault.uploads import AttachmentUpload, _reserve, purge_abandoned, used_today


def test_parallel_reservations_never_pass_the_quota(vault) -> None:
    day = date(2026, 11, 27)

    def one(_: int) -> bool:
        with transaction(vault.engine) as session:
            return _reserve(session.connection(), "zhang.wei", day, 10, 55)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(16)))
    assert results.count(True) == 5
    assert used_today(vault.engine, "zhang.wei", day) == 50
    assert used_today(vault.engine, "li.na", day) == 0


def test_an_abandoned_upload_is_purged_and_a_finished_one_reads(vault) -> None:
    store = ArchiveStore(vault=vault, audit=vault.audit_log())
    no = store.filing.create(archive(), actor=SALES).archive_no
    day = date(2026, 11, 27)
    done = AttachmentUpload(store, no, actor=SALES, day=day)
    done.begin()
    payload = bytes(range(256)) * 2000
    for i in range(0, len(payload), 7000):
        done.feed(payload[i : i + 7000])
        if done.due:
            done.flush()
    info = done.finish("scan.pdf", "application/pdf")
    meta, chunks = store.records.open_attachment(no, info["uid"], actor=SALES)
    assert b"".join(chunks) == payload and meta["filename"] == "scan.pdf"

    dead = AttachmentUpload(store, no, actor=SALES, day=day)
    dead.begin()
    dead.feed(b"z" * 200_000)
    dead.flush()  # and then the process dies
    assert [a["uid"] for a in store.records.attachments(no, actor=SALES)] == [info["uid"]]
    later = datetime.now(UTC) + timedelta(days=2)
    assert purge_abandoned(store, now=later, older_than=timedelta(hours=24)) == 1
    with vault.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Attachment)).scalar_one() == 1
        chunks_left = conn.execute(
            sa.select(sa.func.count()).select_from(AttachmentChunk)
        ).scalar_one()
    assert chunks_left == info["chunks"]
