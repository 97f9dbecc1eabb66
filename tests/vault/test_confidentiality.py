"""What an attacker with the database (and even the keys) can and cannot get."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from tests.factories import SALES, archive
from vault.errors import DecryptionFailed
from vault.models import Archive, ContentHistory, SealedGroup
from vault.schema import FieldSpec
from vault.store import ArchiveStore

CANARY_VALUES = {
    "name": "甄士隐",
    "mobile": "13912345678",
    "landline": "0755-87654321",
    "id_number": "11010519491231002X",
    "plate": "粤B9Z8Y7",
    "date": "1999-09-09",
}


def _canary(field: FieldSpec, i: int) -> str:
    if field.choices:
        return field.choices[-1]
    return CANARY_VALUES.get(field.type, f"CANARY{i:03d}金丝雀{field.name}")


def _database_bytes(store: ArchiveStore, tmp_path: Path) -> bytes:
    engine = store.engine
    if engine.dialect.name == "sqlite":
        db = Path(engine.url.database)
        return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    schema = engine.url.query.get("options") or ""
    with engine.connect() as conn:
        schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
    pg_dump = shutil.which("pg_dump")
    if pg_dump:
        url = engine.url.set(drivername="postgresql")
        out = subprocess.run(
            [
                pg_dump,
                "--no-owner",
                "--schema",
                schema,
                "--dbname",
                url.render_as_string(hide_password=False),
            ],
            capture_output=True,
            check=True,
        )
        return out.stdout
    chunks = []
    with engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            for row in conn.exec_driver_sql(f'SELECT * FROM "{table}"'):
                chunks.append(repr(tuple(row)).encode())
    return b"\n".join(chunks)


def test_canary_values_never_reach_the_database_file(store: ArchiveStore, tmp_path: Path) -> None:
    profile = {name: _canary(f, i) for i, (name, f) in enumerate(store.schema.fields.items())}
    meta = store.filing.create(archive(profile=profile), actor=SALES)
    store.archives.update(meta.archive_no, {"notes": "CANARY-UPDATE-灯塔"}, actor=SALES)
    store.records.add_interaction(
        meta.archive_no,
        occurred_on="2026-01-05",
        channel="call",
        text="CANARY-CALL-回访记录",
        actor=SALES,
    )
    store.records.add_attachment(
        meta.archive_no,
        filename="CANARY-FILE-合同.pdf",
        content_type="application/pdf",
        stream=io.BytesIO(b"CANARY-ATTACHMENT-BYTES" * 5000),
        actor=SALES,
    )
    # The values as stored (normalised) are what must not appear.
    normalised = [store.schema.fields[k].normalise(v, 10_000) for k, v in profile.items()]
    assert store.reader.read(meta.archive_no, actor=SALES).content["identity"]["name"] == "甄士隐"
    dump = _database_bytes(store, tmp_path)
    assert len(dump) > 10_000
    leaks = []
    for value in [
        *normalised,
        "CANARY-UPDATE-灯塔",
        "CANARY-CALL-回访记录",
        "CANARY-FILE-合同",
        "CANARY-ATTACHMENT-BYTES",
    ]:
        if len(value) < 3:
            continue
        for encoded in (value.encode(), value.encode("unicode_escape")):
            if encoded in dump:
                leaks.append(value)
    # A choice value like "其他" can legitimately appear as a label nowhere in the DB either.
    assert leaks == []


def _swap(store: ArchiveStore, model, where_a, where_b, column: str) -> None:
    with Session(store.engine) as s:
        a = s.exec(select(model).where(*where_a)).one()
        b = s.exec(select(model).where(*where_b)).one()
        va, vb = getattr(a, column), getattr(b, column)
        setattr(a, column, vb)
        setattr(b, column, va)
        s.add(a)
        s.add(b)
        s.commit()


def test_ciphertext_moved_to_another_archive_is_refused(store: ArchiveStore) -> None:
    one = store.filing.create(
        archive(profile={"name": "甲", "mobile_phone": "13800000001"}), actor=SALES
    )
    two = store.filing.create(
        archive(profile={"name": "乙", "mobile_phone": "13800000002"}), actor=SALES
    )
    with Session(store.engine) as s:
        ids = {a.archive_no: a.id for a in s.exec(select(Archive))}
    _swap(
        store,
        SealedGroup,
        [SealedGroup.archive_id == ids[one.archive_no], SealedGroup.group_name == "contact"],
        [SealedGroup.archive_id == ids[two.archive_no], SealedGroup.group_name == "contact"],
        "ciphertext",
    )
    for no in (one.archive_no, two.archive_no):
        with pytest.raises(DecryptionFailed, match=f"archive {no}, field group 'contact'"):
            store.reader.read(no, ["contact"], actor=SALES)


def test_wrapped_keys_moved_between_archives_are_refused(store: ArchiveStore) -> None:
    one = store.filing.create(archive(), actor=SALES)
    two = store.filing.create(archive(), actor=SALES)
    _swap(
        store,
        Archive,
        [Archive.archive_no == one.archive_no],
        [Archive.archive_no == two.archive_no],
        "wrapped_dek",
    )
    with pytest.raises(DecryptionFailed, match="data key"):
        store.reader.read(one.archive_no, actor=SALES)


def test_ciphertext_moved_to_another_group_is_refused(store: ArchiveStore) -> None:
    meta = store.filing.create(archive(), actor=SALES)
    with Session(store.engine) as s:
        aid = s.exec(select(Archive.id).where(Archive.archive_no == meta.archive_no)).one()
    _swap(
        store,
        SealedGroup,
        [SealedGroup.archive_id == aid, SealedGroup.group_name == "contact"],
        [SealedGroup.archive_id == aid, SealedGroup.group_name == "health"],
        "ciphertext",
    )
    with pytest.raises(DecryptionFailed):
        store.reader.read(meta.archive_no, ["contact"], actor=SALES)


def test_rolled_back_revision_is_refused(store: ArchiveStore) -> None:
    meta = store.filing.create(archive(), actor=SALES)
    store.archives.update(meta.archive_no, {"mobile_phone": "13900001111"}, actor=SALES)
    with Session(store.engine) as s:
        old = s.exec(select(ContentHistory)).one()
        row = s.exec(select(SealedGroup).where(SealedGroup.group_name == "contact")).one()
        row.ciphertext = old.ciphertext  # an attacker restores the old value
        s.add(row)
        s.commit()
    with pytest.raises(DecryptionFailed):
        store.reader.read(meta.archive_no, ["contact"], actor=SALES)


@pytest.mark.parametrize("offset", [0, 1, 2, 6, 10, 20, -1])
def test_any_flipped_byte_is_refused(store: ArchiveStore, offset: int) -> None:
    meta = store.filing.create(archive(), actor=SALES)
    with Session(store.engine) as s:
        row = s.exec(select(SealedGroup).where(SealedGroup.group_name == "contact")).one()
        blob = bytearray(row.ciphertext)
        blob[offset] ^= 0x01
        row.ciphertext = bytes(blob)
        s.add(row)
        s.commit()
    with pytest.raises(DecryptionFailed):
        store.reader.read(meta.archive_no, ["contact"], actor=SALES)


def test_destroyed_archive_is_gone_even_with_keys_and_database(
    store: ArchiveStore, tmp_path: Path
) -> None:
    meta = store.filing.create(
        archive(
            profile={"name": "贾雨村", "mobile_phone": "13511112222", "notes": "DESTROY-ME-备注"}
        ),
        actor=SALES,
    )
    store.archives.update(meta.archive_no, {"notes": "DESTROY-ME-TOO"}, actor=SALES)
    keep = store.filing.create(archive(), actor=SALES)
    with Session(store.engine) as s:
        wrapped = s.exec(
            select(Archive.wrapped_dek).where(Archive.archive_no == meta.archive_no)
        ).one()
        aid = s.exec(select(Archive.id).where(Archive.archive_no == meta.archive_no)).one()
        blobs = list(s.exec(select(SealedGroup.ciphertext).where(SealedGroup.archive_id == aid)))
        blobs += list(
            s.exec(select(ContentHistory.ciphertext).where(ContentHistory.archive_id == aid))
        )
    assert wrapped and blobs
    cert = store.lifecycle.destroy(meta.archive_no, actor=SALES, reason="保管期满，已失去价值")
    assert cert["erased"]["history"] == 1
    with Session(store.engine) as s:
        row = s.exec(select(Archive).where(Archive.archive_no == meta.archive_no)).one()
        assert row.wrapped_dek is None and row.status == "destroyed"
        assert s.exec(select(SealedGroup).where(SealedGroup.archive_id == aid)).all() == []
    if store.engine.dialect.name == "sqlite":
        assert cert["wal_checkpointed"] is True
        raw = _database_bytes(store, tmp_path)
        # Neither the wrapped key nor any ciphertext survives anywhere in the file.
        assert wrapped not in raw
        for blob in blobs:
            assert blob[-32:] not in raw
    # The other archive is untouched.
    assert store.reader.read(keep.archive_no, ["identity"], actor=SALES).content
