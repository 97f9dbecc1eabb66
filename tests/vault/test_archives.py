"""Changes, lists, search and reassignment of archives that exist."""

from __future__ import annotations

import pytest

from audit.events import Actor, AuditAction
from audit.log import AuditLog
from tests.auditlog import entries
from tests.factories import SALES, archive
from vault.errors import (
    ValidationFailed,
)
from vault.store import ArchiveStore


def test_update_keeps_encrypted_history(store: ArchiveStore) -> None:
    meta = store.filing.create(archive(), actor=SALES)
    store.archives.update(meta.archive_no, {"mobile_phone": "139 0000 1111"}, actor=SALES)
    store.archives.update(
        meta.archive_no, {"mobile_phone": "13700002222", "company": None}, actor=SALES
    )
    now = store.reader.read(meta.archive_no, ["contact"], actor=SALES).content["contact"]
    assert now == {"mobile_phone": "13700002222"}
    history = store.reader.history(meta.archive_no, "contact", actor=SALES)
    assert [h["revision"] for h in history] == [2, 1]
    assert history[0]["fields"]["mobile_phone"] == "13900001111"
    assert history[1]["fields"]["mobile_phone"] == "13800138000"
    with pytest.raises(ValidationFailed, match="no field"):
        store.archives.update(meta.archive_no, {}, actor=SALES)


def test_search_follows_updates(store: ArchiveStore) -> None:
    meta = store.filing.create(archive(), actor=SALES)
    store.archives.update(meta.archive_no, {"mobile_phone": "13900001111"}, actor=SALES)
    assert store.archives.search("mobile_phone", "13800138000", actor=SALES) == []
    assert [
        m.archive_no for m in store.archives.search("mobile_phone", "139-0000-1111", actor=SALES)
    ] == [meta.archive_no]


def test_list_shows_metadata_only_with_filters(store: ArchiveStore) -> None:
    for owner, level in (("zhang.wei", "internal"), ("li.na", "secret"), ("li.na", "internal")):
        store.filing.create(
            archive(owner=owner, classification=level, custodian="chen.jing"), actor=SALES
        )
    page = store.archives.list(actor=SALES, owner="li.na")
    assert page.total == 2
    public = page.items[0].public()
    assert "profile" not in public and "name" not in public
    secret = store.archives.list(actor=SALES, classification="secret").items[0]
    assert secret.public()["remarks"] == "机密"
    with pytest.raises(ValidationFailed):
        store.archives.list(actor=SALES, limit=100000)


def test_reassign_and_contacts(store: ArchiveStore, sink: AuditLog) -> None:
    meta = store.filing.create(archive(contacts=["li.na"]), actor=SALES)
    assert meta.contacts == ("li.na",)
    moved = store.archives.reassign(
        meta.archive_no,
        "wang.fang",
        contacts=["li.na", "liu.yang"],
        actor=Actor("admin", "admin"),
        reason="离职交接",
    )
    assert moved.owner == "wang.fang" and moved.contacts == ("li.na", "liu.yang")
    assert entries(sink)[-1].action == AuditAction.REASSIGN
    assert entries(sink)[-1].detail == {"from": "zhang.wei", "to": "wang.fang"}
