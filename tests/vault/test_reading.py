"""Reads: only the requested groups, masks, refused numbers, and fail-closed auditing."""

from __future__ import annotations

import pytest

from audit.events import AuditAction
from tests.factories import SALES, archive
from vault.errors import (
    ArchiveNotFound,
    ValidationFailed,
)
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
