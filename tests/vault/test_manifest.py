"""The sealed manifest: rollbacks, deleted and added groups are refused on every read path.

The attacker here has write access to the database and nothing else (no key
file): they move rows around with plain SQL, as the attack run did.
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from audit.events import SYSTEM, Outcome
from tests.auditlog import entries
from tests.factories import SALES, archive
from vault.errors import DecryptionFailed
from vault.importer import bulk_insert
from vault.keys import load_key_file, write_key_file
from vault.manifest import seal_missing
from vault.models import Archive, ContentHistory, SealedGroup
from vault.rotation import rotate
from vault.store import ArchiveStore

NEW_MOBILE = "13900001111"
SEALING = "vault:seal-manifests"  # the audit action of sealing (and of refusing to)


def _archive_id(store: ArchiveStore, no: str) -> int:
    with Session(store.engine) as s:
        return s.exec(select(Archive.id).where(Archive.archive_no == no)).one()


def _sql(store: ArchiveStore, stmt: sa.Executable) -> None:
    with store.engine.begin() as conn:
        conn.execute(stmt)


def _updated(store: ArchiveStore) -> str:
    """An archive whose contact group has one superseded revision in history."""
    no = store.filing.create(archive(), actor=SALES).archive_no
    store.archives.update(no, {"mobile_phone": NEW_MOBILE}, actor=SALES)
    assert (
        store.reader.read(no, ["contact"], actor=SALES).content["contact"]["mobile_phone"]
        == NEW_MOBILE
    )
    return no


def _roll_back(store: ArchiveStore, no: str) -> None:
    """The attack: the old ciphertext WITH its revision copied back into archive_content."""
    aid = _archive_id(store, no)
    with Session(store.engine) as s:
        old = s.exec(
            select(ContentHistory).where(
                ContentHistory.archive_id == aid, ContentHistory.group_name == "contact"
            )
        ).one()
        revision, blob = old.revision, old.ciphertext
    c = SealedGroup.__table__  # type: ignore[attr-defined]
    _sql(
        store,
        sa.update(c)
        .where(c.c.archive_id == aid, c.c.group_name == "contact")
        .values(revision=revision, ciphertext=blob),
    )


def test_a_rolled_back_group_is_refused_by_every_read(store: ArchiveStore, sink) -> None:
    no = _updated(store)
    _roll_back(store, no)
    with pytest.raises(DecryptionFailed, match=f"archive {no}, field group 'contact'"):
        store.reader.read(no, ["contact"], actor=SALES)
    assert entries(sink)[-1].outcome == Outcome.ERROR  # audited, and nothing returned
    with pytest.raises(DecryptionFailed):
        store.reader.read(no, actor=SALES)  # every group
    with pytest.raises(DecryptionFailed):
        store.reader.export([no], ["contact"], actor=SALES)
    with pytest.raises(DecryptionFailed):
        store.reader.history(no, "contact", actor=SALES)
    with Session(store.engine) as s, pytest.raises(DecryptionFailed):
        store.reader.decrypt(s, store.reader.load(s, no).row, ["contact"])  # the bare primitive
    # A write does not launder it into a new revision either.
    with pytest.raises(DecryptionFailed):
        store.archives.update(no, {"mobile_phone": "13700000000"}, actor=SALES)
    # Groups that were not rolled back still read.
    assert store.reader.read(no, ["identity"], actor=SALES).content["identity"]["name"] == "王小明"


def test_a_deleted_group_row_is_refused(store: ArchiveStore) -> None:
    no = store.filing.create(archive(), actor=SALES).archive_no
    c = SealedGroup.__table__  # type: ignore[attr-defined]
    _sql(
        store,
        sa.delete(c).where(c.c.archive_id == _archive_id(store, no), c.c.group_name == "health"),
    )
    with pytest.raises(DecryptionFailed, match="field group 'health': missing"):
        store.reader.read(no, ["health"], actor=SALES)
    with pytest.raises(DecryptionFailed):
        store.reader.read(no, actor=SALES)


def test_an_added_group_row_is_refused(store: ArchiveStore) -> None:
    """A group copied in from elsewhere (here: the archive's own history of another
    group is useless, so the attacker re-inserts a group the owner had emptied)."""
    no = store.filing.create(archive(), actor=SALES).archive_no
    aid = _archive_id(store, no)
    with Session(store.engine) as s:
        row = s.exec(
            select(SealedGroup).where(
                SealedGroup.archive_id == aid, SealedGroup.group_name == "health"
            )
        ).one()
        revision, blob = row.revision, row.ciphertext
    store.archives.update(no, {"health": None}, actor=SALES)  # the owner removes the health note
    assert store.reader.read(no, ["health"], actor=SALES).content == {}
    c = SealedGroup.__table__  # type: ignore[attr-defined]
    _sql(
        store,
        sa.insert(c).values(
            archive_id=aid,
            group_name="health",
            revision=revision,
            ciphertext=blob,
            updated_at=sa.func.now(),
        ),
    )
    with pytest.raises(DecryptionFailed, match="field group 'health': not in"):
        store.reader.read(no, ["health"], actor=SALES)


def test_a_recreated_group_cannot_be_swapped_for_its_old_revision_one(store: ArchiveStore) -> None:
    """Emptying and rewriting a group starts again at revision 1: the digest tells them apart."""
    no = store.filing.create(archive(), actor=SALES).archive_no
    store.archives.update(no, {"health": None}, actor=SALES)
    store.archives.update(no, {"health": "已康复"}, actor=SALES)
    aid = _archive_id(store, no)
    with Session(store.engine) as s:
        old = s.exec(select(ContentHistory).where(ContentHistory.archive_id == aid)).one()
        assert old.revision == 1
        blob = old.ciphertext
    c = SealedGroup.__table__  # type: ignore[attr-defined]
    _sql(
        store,
        sa.update(c)
        .where(c.c.archive_id == aid, c.c.group_name == "health")
        .values(revision=1, ciphertext=blob),
    )
    with pytest.raises(DecryptionFailed):
        store.reader.read(no, ["health"], actor=SALES)


def test_deleted_history_rows_are_refused_by_the_history_read(store: ArchiveStore) -> None:
    no = _updated(store)
    store.archives.update(no, {"mobile_phone": "13700000000"}, actor=SALES)
    assert len(store.reader.history(no, "contact", actor=SALES)) == 2
    h = ContentHistory.__table__  # type: ignore[attr-defined]
    _sql(store, sa.delete(h).where(h.c.archive_id == _archive_id(store, no), h.c.revision == 1))
    with pytest.raises(DecryptionFailed, match="history"):
        store.reader.history(no, "contact", actor=SALES)


def test_a_missing_or_foreign_manifest_is_refused(store: ArchiveStore) -> None:
    one = store.filing.create(archive(), actor=SALES).archive_no
    two = store.filing.create(archive(), actor=SALES).archive_no
    a = Archive.__table__  # type: ignore[attr-defined]
    with store.engine.begin() as conn:
        theirs = conn.execute(sa.select(a.c.manifest).where(a.c.archive_no == two)).scalar_one()
        conn.execute(sa.update(a).where(a.c.archive_no == one).values(manifest=theirs))
        conn.execute(sa.update(a).where(a.c.archive_no == two).values(manifest=None))
    with pytest.raises(DecryptionFailed, match="manifest"):
        store.reader.read(one, ["contact"], actor=SALES)
    with pytest.raises(DecryptionFailed, match="manifest of field groups is missing") as missing:
        store.reader.read(two, ["contact"], actor=SALES)
    assert "integrity failure" in str(missing.value)


def test_every_legitimate_write_keeps_reads_working(store: ArchiveStore) -> None:
    no = _updated(store)
    store.archives.update(
        no, {"health": None, "notes": "常客"}, actor=SALES
    )  # a group removed, one added
    view = store.reader.read(no, actor=SALES)
    assert "health" not in view.content and view.content["notes"]["notes"] == "常客"
    assert len(store.reader.history(no, "contact", actor=SALES)) == 1

    store.lifecycle.withdraw_consent(no, ["contact"], actor=SALES)
    assert "contact" not in store.reader.read(no, actor=SALES).content
    assert store.reader.history(no, "contact", actor=SALES) == []

    store.lifecycle.reclassify(no, "top_secret", actor=SYSTEM, custodian="chen.jing")
    assert store.reader.read(no, ["notes"], actor=SALES).content["notes"]["notes"] == "常客"
    assert len(store.reader.history(no, "health", actor=SALES)) == 1

    rotate(store, actor=SYSTEM, levels=["top_secret"])  # rewraps the DEK only
    assert store.reader.read(no, actor=SALES).content["identity"]["name"] == "王小明"
    store.archives.update(no, {"notes": "老客户"}, actor=SALES)
    assert store.reader.read(no, ["notes"], actor=SALES).content["notes"]["notes"] == "老客户"

    store.lifecycle.destroy(no, actor=SYSTEM, reason="retention ended")
    with Session(store.engine) as s:
        assert s.exec(select(Archive.manifest).where(Archive.archive_no == no)).one() is None


def test_reclassification_does_not_launder_a_rollback(store: ArchiveStore) -> None:
    no = _updated(store)
    _roll_back(store, no)
    with pytest.raises(DecryptionFailed):
        store.lifecycle.reclassify(no, "secret", actor=SYSTEM)
    with pytest.raises(DecryptionFailed):
        store.reader.read(no, ["contact"], actor=SALES)


def test_import_seals_one_manifest_per_archive(store: ArchiveStore) -> None:
    records = [store.filing.prepare(archive(profile={"name": f"客户{i}"})) for i in range(3)]
    report = bulk_insert(store, records, actor=SALES, total=3, source="test")
    assert report.imported == 3
    with Session(store.engine) as s:
        assert all(m is not None for m in s.exec(select(Archive.manifest)))
    assert (
        store.reader.read(report.last, ["identity"], actor=SALES).content["identity"]["name"]
        == "客户2"
    )


def _null_manifests(store: ArchiveStore, no: str | None = None) -> None:
    a = Archive.__table__  # type: ignore[attr-defined]
    where = sa.true() if no is None else a.c.id == _archive_id(store, no)
    _sql(store, sa.update(a).where(where).values(manifest=None))


def _manifest_of(store: ArchiveStore, no: str) -> bytes | None:
    with Session(store.engine) as s:
        return s.exec(select(Archive.manifest).where(Archive.archive_no == no)).one()


def _as_before_manifests(store: ArchiveStore) -> None:
    """The key file of a vault created before sealed manifests: it has no ``manifests`` record
    (the process reopens it, as the first start after an upgrade does)."""
    path = store.settings.resolved_key_file
    data = json.loads(path.read_text())
    data.pop("manifests")
    write_key_file(path, data)
    store.keys = store.vault.keys = store.envelope.keys = store.index.keys = load_key_file(path)


def test_upgrade_seals_archives_written_before_manifests(store: ArchiveStore, sink) -> None:
    no = _updated(store)
    _as_before_manifests(store)
    _null_manifests(store)  # as the migration that added the column leaves them
    with pytest.raises(DecryptionFailed, match=r"no sealed manifest.*seal-manifests"):
        store.reader.read(no, ["contact"], actor=SALES)
    assert seal_missing(store) == 1
    sealed = [e for e in entries(sink) if e.action == SEALING]
    assert [e.archives for e in sealed] == [(no,), ()]  # audited: what was vouched for
    assert sealed[-1].detail == {"sealed": 1, "all_sealed": True}
    assert seal_missing(store) == 0
    assert (
        store.reader.read(no, ["contact"], actor=SALES).content["contact"]["mobile_phone"]
        == NEW_MOBILE
    )
    assert len(store.reader.history(no, "contact", actor=SALES)) == 1
    _roll_back(store, no)  # and from now on a rollback is caught
    with pytest.raises(DecryptionFailed):
        store.reader.read(no, ["contact"], actor=SALES)


def test_an_older_vault_seals_once_then_a_missing_manifest_is_tampering(
    store: ArchiveStore,
) -> None:
    """Sealing every archive once is recorded in the key file; after that (here: in another
    process that loaded the key file before) a manifest set to NULL is never sealed again."""
    no = _updated(store)
    _as_before_manifests(store)
    earlier = load_key_file(store.settings.resolved_key_file)  # e.g. the running service
    assert earlier.manifests_complete() is False
    _null_manifests(store)
    assert seal_missing(store) == 1
    key_file = json.loads(store.settings.resolved_key_file.read_text())
    assert key_file["manifests"]["all_sealed"] is True
    assert earlier.manifests_complete() is True  # looks again in the file
    earlier.add_version("internal")  # a later write by that process keeps the record
    assert "manifests" in json.loads(store.settings.resolved_key_file.read_text())

    _roll_back(store, no)
    _null_manifests(store, no)
    with pytest.raises(DecryptionFailed, match=no):
        seal_missing(store)
    assert _manifest_of(store, no) is None
    with pytest.raises(DecryptionFailed, match="integrity failure"):
        store.reader.read(no, ["contact"], actor=SALES)


def test_a_rollback_is_not_laundered_by_sealing_missing_manifests(
    store: ArchiveStore, sink
) -> None:
    """Someone with write access to the database only rolls a group back AND sets the
    manifest to NULL. The read error must not send operators to re-seal, and sealing
    (which every `upgrade` runs) must refuse: the vault's archives all carry manifests
    from `init` on, as its key file records, so a missing one is tampering."""
    no = _updated(store)
    other = store.filing.create(archive(), actor=SALES).archive_no
    _roll_back(store, no)
    _null_manifests(store, no)
    with pytest.raises(DecryptionFailed) as refused:
        store.reader.read(no, ["contact"], actor=SALES)
    advice = str(refused.value)
    assert "seal-manifests" not in advice and "upgrade" not in advice
    assert f"archive {no}: its sealed manifest of field groups is missing" in advice
    assert "integrity failure" in advice

    with pytest.raises(DecryptionFailed) as tampered:
        seal_missing(store)  # what `upgrade` and `seal-manifests` run
    assert getattr(tampered.value, "archives", None) == (no,)
    assert f"tampered with in the database ({no})" in str(tampered.value)
    audited = entries(sink)[-1]
    assert audited.action == SEALING and audited.outcome == Outcome.ERROR
    assert audited.archives == (no,) and audited.detail["missing_manifests"] == 1

    assert _manifest_of(store, no) is None  # nothing was sealed
    with pytest.raises(DecryptionFailed):
        store.reader.read(no, ["contact"], actor=SALES)  # the rolled-back value never reads
    assert store.reader.read(other, ["contact"], actor=SALES).content["contact"]  # others still do
