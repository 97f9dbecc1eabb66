"""Reads: only the requested groups, masks, refused numbers, and fail-closed auditing."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from audit.events import AuditAction
from foundation.rawsql import raw_connect
from tests.factories import SALES, archive
from vault.errors import (
    ArchiveNotFound,
    ValidationFailed,
)
from vault.models import Archive
from vault.store import ArchiveStore


def test_read_decrypts_only_requested_groups(store: ArchiveStore) -> None:
    meta = store.filing.create(archive(), actor=SALES)
    assert set(store.reader.read(meta.archive_no, ["contact"], actor=SALES).content) == {"contact"}


def test_masked_view(store: ArchiveStore) -> None:
    meta = store.filing.create(
        archive(profile={"name": "欧阳娜娜", "mobile_phone": "13812345678"}), actor=SALES
    )
    view = store.reader.read(
        meta.archive_no, ["identity", "contact"], masked=["identity", "contact"], actor=SALES
    )
    assert view.content == {
        "identity": {"name": "欧***"},
        "contact": {"mobile_phone": "138****5678"},
    }


def test_load_gives_the_row_and_every_contact_once(store: ArchiveStore) -> None:
    """One statement joins the contacts: the row is the archive's own, contacts sorted."""
    alone = store.filing.create(archive(), actor=SALES).archive_no
    shared = store.filing.create(
        archive(contacts=["zhou.min", "li.na", "wang.fang"]), actor=SALES
    ).archive_no
    table = Archive.__table__  # type: ignore[attr-defined]
    with raw_connect(store.engine) as tx:
        one, many = store.reader.load(tx, alone), store.reader.load(tx, shared)
    assert one.meta.contacts == ()
    assert many.meta.contacts == ("li.na", "wang.fang", "zhou.min")
    assert many.row._fields == tuple(c.key for c in table.columns)
    assert (one.meta.archive_no, many.meta.archive_no) == (alone, shared)
    with store.engine.connect() as conn:
        for stored in (one, many):
            row = conn.execute(
                sa.select(table).where(table.c.archive_no == stored.meta.archive_no)
            ).one()
            assert tuple(stored.row) == tuple(row)


def test_unknown_and_malformed_archive_numbers(store: ArchiveStore) -> None:
    with pytest.raises(ArchiveNotFound):
        store.reader.read("KH-2026-999999", actor=SALES)
    with pytest.raises(ValidationFailed):
        store.reader.read("../../etc/passwd", actor=SALES)
    with pytest.raises(ValidationFailed, match="unknown field group"):
        store.reader.read("KH-2026-999999", ["gossip"], actor=SALES)


def test_failed_audit_append_releases_no_plaintext(vault) -> None:
    class BrokenSink:
        def append(self, session, event):
            if event.action == AuditAction.READ:
                raise RuntimeError("audit log unavailable")

    store = ArchiveStore(vault=vault, audit=BrokenSink())
    meta = store.filing.create(archive(), actor=SALES)
    with pytest.raises(RuntimeError):
        store.reader.read(meta.archive_no, actor=SALES)
