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
from vault.models import Archive, SealedGroup
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


@pytest.mark.parametrize("contacts", [[], ["li.na"], ["zhou.min", "li.na", "wang.fang"]])
def test_load_with_groups_brings_each_sealed_group_once(
    store: ArchiveStore, contacts: list[str]
) -> None:
    """The ciphertext fetched with the row is the content table's, one row per group found,
    whatever the number of contacts; groups the archive lacks bring nothing."""
    no = store.filing.create(archive(contacts=contacts), actor=SALES).archive_no
    content = SealedGroup.__table__  # type: ignore[attr-defined]
    table = Archive.__table__  # type: ignore[attr-defined]
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(table).where(table.c.archive_no == no)).one()
        stored_groups = {
            r.group_name: (r.group_name, r.revision, bytes(r.ciphertext))
            for r in conn.execute(sa.select(content).where(content.c.archive_id == row.id))
        }
    for wanted in (["contact"], ["identity", "contact", "health"], list(store.schema.groups)):
        with raw_connect(store.engine) as tx:
            plain, fetched = store.reader.load(tx, no), store.reader.load(tx, no, wanted)
        assert tuple(fetched.row) == tuple(plain.row) == tuple(row)
        assert fetched.meta == plain.meta
        assert fetched.meta.contacts == tuple(sorted(contacts))
        assert fetched.fetched == frozenset(wanted)
        expected = [stored_groups[g] for g in wanted if g in stored_groups]
        assert sorted((g, r, bytes(b)) for g, r, b in fetched.sealed) == sorted(expected)
        assert plain.sealed == () and plain.fetched == frozenset()
        with raw_connect(store.engine) as tx:
            opened = store.reader.decrypt(tx, fetched.row, wanted, fetched)
            assert opened == store.reader.decrypt(tx, plain.row, wanted)


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
