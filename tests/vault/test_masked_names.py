"""The customer list's masked names: sealed at rest, following the name, erased with it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import sqlalchemy as sa

from tests.auditlog import entries
from tests.factories import SALES, archive
from tests.vault.test_confidentiality import _database_bytes
from vault.importer import import_file
from vault.masked_names import backfill
from vault.store import ArchiveStore

NAME = "甄士隐"
MASKED = "甄**"
ONLY_SURNAME_AND_MASK = re.compile(r"甄\*+")


def _new(store: ArchiveStore, name: str = NAME, **over: object) -> str:
    profile = {"name": name, "mobile_phone": "13800138000"}
    return store.filing.create(archive(profile=profile, **over), actor=SALES).archive_no


def _listed(store: ArchiveStore, **filters: object) -> dict[str, str | None]:
    page = store.archives.list(actor=SALES, audit=False, limit=500, **filters)
    return {m.archive_no: m.masked_name for m in page.items}


def _column(store: ArchiveStore, no: str) -> bytes | None:
    with store.engine.connect() as conn:
        value = conn.execute(
            sa.text("SELECT masked_name_ct FROM archive WHERE archive_no = :no"), {"no": no}
        ).scalar_one()
    return bytes(value) if value is not None else None


def test_filing_lists_only_the_surname_and_the_mask(store: ArchiveStore) -> None:
    no = _new(store)
    masked = _listed(store)[no]
    assert masked == MASKED and ONLY_SURNAME_AND_MASK.fullmatch(masked)
    assert "士" not in masked and "隐" not in masked
    nameless = store.filing.create(
        archive(profile={"mobile_phone": "13800138001"}), actor=SALES
    ).archive_no
    assert _listed(store)[nameless] is None


def test_the_masked_name_is_sealed_and_bound_to_its_archive(
    store: ArchiveStore, tmp_path: Path
) -> None:
    no = _new(store)
    other = _new(store, "李四光")
    sealed = _column(store, no)
    assert sealed is not None and sealed[0] == 0xA5  # vault.crypto's header: AES-256-GCM
    assert MASKED.encode() not in sealed and NAME.encode() not in sealed
    everything = _database_bytes(store, tmp_path)
    assert NAME.encode() not in everything
    assert MASKED.encode() not in everything and "李**".encode() not in everything
    # Copied onto another archive's row it does not open: that row shows no name.
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE archive SET masked_name_ct = :ct WHERE archive_no = :no"),
            {"ct": sealed, "no": other},
        )
    assert _listed(store)[other] is None and _listed(store)[no] == MASKED


def test_a_change_of_the_name_is_followed(store: ArchiveStore) -> None:
    no = _new(store)
    store.archives.update(no, {"name": "欧阳娜娜"}, actor=SALES)
    assert _listed(store)[no] == "欧***"
    store.archives.update(no, {"mobile_phone": "13900139000"}, actor=SALES)
    assert _listed(store)[no] == "欧***"
    store.archives.update(no, {"name": None}, actor=SALES)
    assert _listed(store)[no] is None


def test_search_answers_carry_the_masked_name(store: ArchiveStore) -> None:
    no = _new(store)
    (found,) = store.archives.search("mobile_phone", "13800138000", actor=SALES)
    assert found.archive_no == no and found.masked_name == MASKED


def test_import_files_masked_names(store: ArchiveStore, tmp_path: Path) -> None:
    rows = [archive(profile={"name": f"王{'小明'[: i % 2 + 1]}"}) for i in range(4)]
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    assert import_file(store, path, owner=None, actor=SALES).imported == 4
    assert sorted(_listed(store).values()) == ["王*", "王*", "王**", "王**"]


def test_withdrawn_consent_and_destruction_erase_it(store: ArchiveStore) -> None:
    withdrawn, destroyed, kept = _new(store), _new(store), _new(store)
    store.lifecycle.withdraw_consent(withdrawn, ["contact"], actor=SALES)
    assert _listed(store)[withdrawn] == MASKED  # another group: the name stays
    store.lifecycle.withdraw_consent(withdrawn, ["identity"], actor=SALES)
    assert _listed(store)[withdrawn] is None and _column(store, withdrawn) is None
    store.lifecycle.destroy(destroyed, actor=SALES, reason="retention period over")
    assert _column(store, destroyed) is None
    assert _listed(store, status="destroyed") == {destroyed: None}
    assert _listed(store)[kept] == MASKED


def test_reclassification_reseals_it(store: ArchiveStore) -> None:
    no = _new(store)
    with store.engine.begin() as conn:  # as if filed before masked names
        conn.execute(sa.text("UPDATE archive SET masked_name_ct = NULL"))
    store.lifecycle.reclassify(no, "secret", actor=SALES, custodian="chen.jing")
    assert _listed(store)[no] == MASKED


def test_backfill_fills_old_archives_once_and_is_audited(store: ArchiveStore) -> None:
    numbers = [_new(store, name) for name in (NAME, "李四", "司马相如")]
    nameless = store.filing.create(archive(profile={"company": "星河"}), actor=SALES)
    gone = _new(store)
    store.lifecycle.destroy(gone, actor=SALES, reason="retention period over")
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE archive SET masked_name_ct = NULL"))
    assert set(_listed(store).values()) == {None}
    seen: list[tuple[int, int]] = []
    filled, failed = backfill(store, batch=2, progress=lambda d, t: seen.append((d, t)))
    assert (filled, failed) == (3, 0) and seen == [(2, 4), (4, 4)]
    listed = _listed(store)
    assert [listed[n] for n in numbers] == [MASKED, "李*", "司***"]
    assert listed[nameless.archive_no] is None and _column(store, gone) is None
    assert backfill(store) == (0, 0)  # idempotent: nothing left to fill
    assert [listed[n] for n in numbers] == [_listed(store)[n] for n in numbers]
    audited = [e for e in entries(store.audit) if e.action == "vault:mask-names"]
    assert len(audited) == 3 and audited[0].groups == ("identity",)
    assert set(audited[0].archives) | set(audited[1].archives) == {
        *numbers,
        nameless.archive_no,
    }
    assert all(NAME not in repr(e) and MASKED not in repr(e) for e in audited)


def test_backfill_skips_an_archive_that_does_not_open(store: ArchiveStore) -> None:
    broken, fine = _new(store), _new(store, "李四")
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE archive SET masked_name_ct = NULL"))
        conn.execute(
            sa.text("UPDATE archive SET manifest = NULL WHERE archive_no = :no"), {"no": broken}
        )
    assert backfill(store) == (1, 1)
    assert _listed(store) == {broken: None, fine: "李*"}
