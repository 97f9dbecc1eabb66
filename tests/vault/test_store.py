"""The store service: create, read, update, history, list, consent, reassign, reclassify."""

from __future__ import annotations

import io
from datetime import date

import pytest

from audit.events import Actor, AuditAction, RecordingSink
from tests.factories import SALES, archive, consent, everyone
from vault.errors import (
    ArchiveDestroyed,
    ArchiveNotFound,
    ConsentMissing,
    DecryptionFailed,
    ValidationFailed,
)
from vault.store import ArchiveStore


def test_create_and_read_back(store: ArchiveStore, sink: RecordingSink) -> None:
    meta = store.filing.create(
        archive(profile={"name": "张 三", "mobile_phone": "+86 138 0013 8000"}), actor=SALES
    )
    assert meta.archive_no.startswith("KH-") and meta.classification == "internal"
    view = store.reader.read(meta.archive_no, ["identity", "contact"], actor=SALES, purpose="revisit")
    assert view.content == {
        "identity": {"name": "张三"},
        "contact": {"mobile_phone": "13800138000"},
    }
    read = [e for e in sink.events if e.action == AuditAction.READ][-1]
    assert read.archives == (meta.archive_no,) and read.groups == ("identity", "contact")
    assert read.purpose == "revisit"


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


def test_archive_numbers_are_sequential_and_readable(store: ArchiveStore) -> None:
    first = store.filing.create(archive(), actor=SALES).archive_no
    second = store.filing.create(archive(), actor=SALES).archive_no
    assert int(second[-6:]) == int(first[-6:]) + 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"classification": "confidential"}, "classification must be one of"),
        ({"classification": "top_secret"}, "custodian"),
        ({"grade": "E"}, "grade must be one of"),
        ({"category": "vip"}, "category must be one of"),
        ({"owner": "Robert'); DROP TABLE"}, "owner must be a username"),
        ({"retention_until": "next year"}, "retention_until"),
        ({"archive_no": "123"}, "archive_no must look like"),
        ({"colour": "red"}, "unknown key"),
        ({"profile": {"shoe_size": "42"}}, "unknown field 'shoe_size'"),
        ({"profile": {"mobile_phone": 13800138000}}, "must be a string"),
        ({"profile": {"name": "张" * 41}}, "longer than 40"),
        ({"profile": {"id_number": "110105194912310021"}}, "check character"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(
    store: ArchiveStore, overrides: dict, message: str
) -> None:
    with pytest.raises(ValidationFailed, match=message):
        store.filing.create(archive(**overrides), actor=SALES)
    assert store.archives.list(actor=SALES).total == 0


def test_validation_messages_never_echo_values(store: ArchiveStore) -> None:
    with pytest.raises(ValidationFailed) as exc:
        store.filing.create(
            archive(profile={"mobile_phone": "99912345678", "id_number": "110105194912310021"}),
            actor=SALES,
        )
    assert "99912345678" not in exc.value.message and "110105194912310021" not in exc.value.message


def test_sensitive_group_needs_separate_consent(store: ArchiveStore) -> None:
    data = archive(consent=consent(sensitive=["whereabouts"]))
    with pytest.raises(ConsentMissing, match="health") as exc:
        store.filing.create(data, actor=SALES)
    assert "separate consent" in exc.value.message
    with pytest.raises(ConsentMissing, match="no recorded consent"):
        store.filing.create(archive(consent=None), actor=SALES)
    meta = store.filing.create(
        archive(consent=consent(sensitive=["whereabouts"]), profile={"name": "李四"}), actor=SALES
    )
    with pytest.raises(ConsentMissing):
        store.archives.update(meta.archive_no, {"health": "高血压"}, actor=SALES)


def test_consent_must_be_well_formed(store: ArchiveStore) -> None:
    bad = consent()
    bad["at"] = "2999-01-01T00:00:00+08:00"
    with pytest.raises(ValidationFailed, match="future"):
        store.filing.create(archive(consent=bad), actor=SALES)
    bad = consent(groups=["identity"], sensitive=["health"])
    with pytest.raises(ValidationFailed, match=r"must also be in consent\.groups"):
        store.filing.create(archive(consent=bad), actor=SALES)


def test_update_keeps_encrypted_history(store: ArchiveStore) -> None:
    meta = store.filing.create(archive(), actor=SALES)
    store.archives.update(meta.archive_no, {"mobile_phone": "139 0000 1111"}, actor=SALES)
    store.archives.update(meta.archive_no, {"mobile_phone": "13700002222", "company": None}, actor=SALES)
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
    assert store.archives.search("mobile_phone", "13800138000", actor=SALES, visible=everyone) == []
    assert [
        m.archive_no
        for m in store.archives.search("mobile_phone", "139-0000-1111", actor=SALES, visible=everyone)
    ] == [meta.archive_no]


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
    assert store.archives.search("mobile_phone", "13800138000", actor=SALES, visible=everyone) == []
    with pytest.raises(ConsentMissing):
        store.archives.update(meta.archive_no, {"health": "良好"}, actor=SALES)


def test_list_shows_metadata_only_with_filters(store: ArchiveStore) -> None:
    for owner, level in (("zhang.wei", "internal"), ("li.na", "secret"), ("li.na", "internal")):
        store.filing.create(archive(owner=owner, classification=level, custodian="chen.jing"), actor=SALES)
    page = store.archives.list(actor=SALES, owner="li.na")
    assert page.total == 2
    public = page.items[0].public()
    assert "profile" not in public and "name" not in public
    secret = store.archives.list(actor=SALES, classification="secret").items[0]
    assert secret.public()["remarks"] == "机密"
    with pytest.raises(ValidationFailed):
        store.archives.list(actor=SALES, limit=100000)


def test_reassign_and_contacts(store: ArchiveStore, sink: RecordingSink) -> None:
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
    assert sink.events[-1].action == AuditAction.REASSIGN
    assert sink.events[-1].detail == {"from": "zhang.wei", "to": "wang.fang"}


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
    from sqlmodel import Session, select

    from vault.models import AttachmentChunk

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
        store.lifecycle.destroy(store.filing.create(archive(), actor=SALES).archive_no, actor=SALES, reason=" ")
