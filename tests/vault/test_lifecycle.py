"""Consent withdrawal, reclassification and destruction."""

from __future__ import annotations

import io

import pytest

from tests.factories import SALES, archive
from vault.errors import (
    ArchiveDestroyed,
    ConsentMissing,
    ValidationFailed,
)
from vault.store import ArchiveStore


def test_withdrawing_consent_erases_group_and_history(store: ArchiveStore) -> None:
    meta = store.filing.create(
        archive(profile={"name": "赵六", "health": "良好", "mobile_phone": "13800138000"}),
        actor=SALES,
    )
    store.archives.update(meta.archive_no, {"health": "住院中"}, actor=SALES)
    erased = store.lifecycle.withdraw_consent(meta.archive_no, ["health", "contact"], actor=SALES)
    assert erased == {"groups": 2, "history": 1, "index_entries": 1}
    view = store.reader.read(meta.archive_no, actor=SALES)
    assert "health" not in view.content and "contact" not in view.content
    assert "health" not in view.consent.groups and "health" not in view.consent.sensitive_groups
    assert store.reader.history(meta.archive_no, "health", actor=SALES) == []
    assert store.archives.search("mobile_phone", "13800138000", actor=SALES) == []
    with pytest.raises(ConsentMissing):
        store.archives.update(meta.archive_no, {"health": "良好"}, actor=SALES)


def test_reclassify_reseals_everything(store: ArchiveStore) -> None:
    meta = store.filing.create(archive(), actor=SALES)
    store.archives.update(meta.archive_no, {"mobile_phone": "13900001111"}, actor=SALES)
    store.records.add_interaction(
        meta.archive_no, occurred_on="2026-03-01", channel="visit", text="上门拜访", actor=SALES
    )
    att = store.records.add_attachment(
        meta.archive_no,
        filename="合同.pdf",
        content_type="application/pdf",
        stream=io.BytesIO(b"%PDF" + b"x" * 150_000),
        actor=SALES,
    )
    with pytest.raises(ValidationFailed, match="custodian"):
        store.lifecycle.reclassify(meta.archive_no, "top_secret", actor=SALES)
    store.lifecycle.reclassify(meta.archive_no, "top_secret", custodian="chen.jing", actor=SALES)
    view = store.reader.read(meta.archive_no, ["contact"], actor=SALES)
    assert view.meta.classification == "top_secret" and view.meta.custodian == "chen.jing"
    assert view.content["contact"]["mobile_phone"] == "13900001111"
    assert (
        store.reader.history(meta.archive_no, "contact", actor=SALES)[0]["fields"]["mobile_phone"]
        == "13800138000"
    )
    assert store.records.interactions(meta.archive_no, actor=SALES)[0]["text"] == "上门拜访"
    info, chunks = store.records.open_attachment(meta.archive_no, att["uid"], actor=SALES)
    assert info["filename"] == "合同.pdf" and b"".join(chunks) == b"%PDF" + b"x" * 150_000


def test_destroyed_archive_refuses_everything(store: ArchiveStore) -> None:
    meta = store.filing.create(archive(), actor=SALES)
    cert = store.lifecycle.destroy(meta.archive_no, actor=SALES, reason="保管期满")
    assert cert["archive_no"] == meta.archive_no and cert["erased"]["groups"] >= 3
    for call in (
        lambda: store.reader.read(meta.archive_no, actor=SALES),
        lambda: store.archives.update(meta.archive_no, {"name": "x"}, actor=SALES),
        lambda: store.lifecycle.destroy(meta.archive_no, actor=SALES, reason="again"),
    ):
        with pytest.raises(ArchiveDestroyed):
            call()
    assert store.reader.meta(meta.archive_no).status == "destroyed"
    with pytest.raises(ValidationFailed, match="reason"):
        store.lifecycle.destroy(
            store.filing.create(archive(), actor=SALES).archive_no, actor=SALES, reason=" "
        )
