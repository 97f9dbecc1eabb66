"""A large import across batch boundaries: all or nothing, and every field group reads back.

The import seals and writes in batches inside one transaction; a bad row after
several batches were written must leave no archive, no blind-index row, no
sealed group, no contact and no audit entry behind, and a good file must read
back exactly as validated, group by group, with its blind indexes, masked
names and audit entries (one per batch) in place.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from audit.events import AuditAction
from audit.log import AuditLog
from tests.auditlog import entries
from tests.factories import SALES
from vault import import_workers
from vault.errors import Conflict, ValidationFailed
from vault.importer import ImportFailed, import_file
from vault.models import Archive, ArchiveContact, BlindIndex, SealedGroup, table_of
from vault.seed import SyntheticArchives
from vault.store import ArchiveStore


def _write(path: Path, rows: list[Any]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n")
    return path


def _counts(store: ArchiveStore) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in map(table_of, (Archive, SealedGroup, BlindIndex, ArchiveContact))
        }


@pytest.fixture(params=["in-process", "worker", "workers"])
def validation(request: pytest.FixtureRequest, store: ArchiveStore) -> str:
    """Rows validated in the importer's process, or in one or two worker processes that
    also seal them (any file size)."""
    store.settings.import_workers = {"in-process": 0, "worker": 1, "workers": 2}[request.param]
    store.settings.import_parallel_bytes = 0
    return str(request.param)


def test_a_bad_row_after_several_batches_leaves_nothing(
    store: ArchiveStore, sink: AuditLog, tmp_path: Path, validation: str
) -> None:
    store.settings.import_batch = 400  # rows 1-1,200 are sealed and written before line 1,500
    rows: list[Any] = list(SyntheticArchives(seed=11).many(2000))
    for i, row in enumerate(rows):
        row["contacts"] = [row["owner"]] if i % 3 else []
    rows[1499]["profile"]["mobile_phone"] = "12345"  # line 1,500
    seen: list[tuple[str, int]] = []
    with pytest.raises(ImportFailed) as exc:
        import_file(
            store,
            _write(tmp_path / "big.jsonl", rows),
            owner=None,
            actor=SALES,
            progress=lambda phase, done, _total: seen.append((phase, done)),
        )
    assert [line for line, _ in exc.value.rows] == [1500]
    assert "mobile_phone" in exc.value.rows[0][1] and "12345" not in exc.value.rows[0][1]
    assert exc.value.total == 2000
    assert ("importing", 1200) in seen  # three batches were written inside the transaction
    assert ("validating", 2000) in seen  # and every row after the bad one was still checked
    assert _counts(store) == dict.fromkeys(_counts(store), 0)
    assert not [e for e in entries(sink) if e.action == AuditAction.IMPORT]
    # Nothing numbered either: the next archive takes the year's first number.
    first = import_file(
        store, _write(tmp_path / "one.jsonl", rows[:1]), owner=None, actor=SALES
    ).first
    assert first is not None and first.endswith("-000001")
    assert len([e for e in entries(sink) if e.action == AuditAction.IMPORT]) == 1


def test_every_field_group_reads_back_as_validated(
    store: ArchiveStore, sink: AuditLog, tmp_path: Path, validation: str
) -> None:
    store.settings.import_batch = 128
    gen = SyntheticArchives(seed=12)
    rows: list[Any] = list(gen.many(300))
    for i, row in enumerate(rows):
        row["contacts"] = ["li.na", "wang.fang"][: i % 3]
        if i % 7 == 0:
            row["archive_no"] = f"KH-2024-{i + 1:06d}"
    path = _write(tmp_path / "rows.jsonl", rows)
    report = import_file(store, path, owner=None, actor=SALES)
    assert report.imported == 300

    expected = [store.filing.prepare(row) for row in rows]
    numbers = [m.archive_no for m in store.archives.list(actor=SALES, limit=500).items]
    assert len(numbers) == 300
    by_no = {}
    counter = 0
    for record in expected:
        if record.archive_no is None:
            counter += 1
            record.archive_no = f"KH-{store.clock().year}-{counter:06d}"
        by_no[record.archive_no] = record
    assert set(by_no) == set(numbers)
    groups_seen: Counter[str] = Counter()
    for no, record in by_no.items():
        view = store.reader.read(no, list(store.schema.groups), actor=SALES)
        assert view.content == record.groups  # every group, every field, normalised
        groups_seen.update(list(view.content))
        meta = view.meta
        assert (meta.classification, meta.owner, meta.custodian, meta.department) == (
            record.classification,
            record.owner,
            record.custodian,
            record.department,
        )
        assert (meta.grade, meta.category, meta.retention_until) == (
            record.grade,
            record.category,
            record.retention_until,
        )
        assert meta.contacts == tuple(sorted(record.contacts))
        assert view.consent == record.consent
    assert set(groups_seen) == set(store.schema.groups)  # the file exercised every group

    # Blind indexes find an imported archive by each searchable field.
    sample = by_no[numbers[150]]
    for field in store.schema.searchable:
        group = store.schema.fields[field].group
        value = sample.groups.get(group, {}).get(field)
        if value is None:
            continue
        found = store.archives.search(field, value, actor=SALES)
        assert numbers[150] in {m.archive_no for m in found}, field
    # The customer list's masked names open, each the masked view of the archive's name.
    spec = store.schema.fields["name"]
    for item in store.archives.list(actor=SALES, limit=500).items:
        name = by_no[item.archive_no].groups.get(spec.group, {}).get("name")
        assert item.masked_name == (spec.masked(name) if name else None)
    # One audit entry per batch, naming exactly the archives it wrote.
    imports = [e for e in entries(sink) if e.action == AuditAction.IMPORT]
    assert [e.detail["rows"] for e in imports] == [128, 128, 44]
    assert [no for e in imports for no in e.archives] == [r.archive_no for r in expected]


def test_the_worker_names_the_same_problems(store: ArchiveStore, tmp_path: Path) -> None:
    rows: list[Any] = list(SyntheticArchives(seed=13).many(1200))
    rows[3] = "{not json"
    rows[700]["grade"] = "Z"
    rows[701]["profile"]["office_phone"] = "12"
    rows[702]["profile"]["shoe_size"] = "42"
    rows[1100]["consent"]["sensitive_groups"] = []
    rows[1199]["archive_no"] = rows[1198]["archive_no"] = "KH-2024-000009"
    path = _write(tmp_path / "bad.jsonl", rows)
    store.settings.import_parallel_bytes = 0
    answers = []
    for workers in (0, 1):
        store.settings.import_workers = workers
        with pytest.raises(ImportFailed) as exc:
            import_file(store, path, owner=None, actor=SALES)
        answers.append(exc.value.rows)
    assert answers[0] == answers[1]
    assert [line for line, _ in answers[0]] == [4, 701, 702, 703, 1101, 1200]
    assert _counts(store) == dict.fromkeys(_counts(store), 0)


def test_a_worker_killed_midway_fails_the_import_and_leaves_nothing(
    store: ArchiveStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.settings.import_workers, store.settings.import_parallel_bytes = 1, 0
    store.settings.import_batch = 200
    path = _write(tmp_path / "rows.jsonl", list(SyntheticArchives(seed=14).many(6000)))
    started: list[subprocess.Popen[bytes]] = []
    real_popen = import_workers.subprocess.Popen

    def popen(*args: Any, **kw: Any) -> subprocess.Popen[bytes]:
        started.append(real_popen(*args, **kw))
        return started[-1]

    def kill_the_worker(phase: str, done: int, _total: int) -> None:
        if phase == "importing" and started[0].poll() is None:
            started[0].kill()

    monkeypatch.setattr(import_workers.subprocess, "Popen", popen)
    with pytest.raises(import_workers.WorkerFailed):
        import_file(store, path, owner=None, actor=SALES, progress=kill_the_worker)
    assert started[0].poll() is not None
    assert _counts(store) == dict.fromkeys(_counts(store), 0)


def test_a_file_that_is_not_utf8_is_refused_with_or_without_the_worker(
    store: ArchiveStore, tmp_path: Path, validation: str
) -> None:
    path = _write(tmp_path / "rows.jsonl", list(SyntheticArchives(seed=15).many(1500)))
    with path.open("ab") as fh:
        fh.write(b'{"owner": "\xff\xfe"}\n')
    with pytest.raises(ValidationFailed, match="not UTF-8"):
        import_file(store, path, owner=None, actor=SALES)
    assert _counts(store) == dict.fromkeys(_counts(store), 0)


def test_csv_rows_are_validated_alike_in_the_worker(store: ArchiveStore, tmp_path: Path) -> None:
    path = tmp_path / "clients.csv"
    path.write_text(
        "grade,classification,custodian,name,mobile_phone,consent.notice,consent.at,"
        "consent.channel,consent.groups\n"
        "B,internal,,关羽,13922223333,v3,2025-05-01T10:00:00,书面,identity;contact\n"
        "B,internal,,张飞,139,v3,2025-05-01T10:00:00,书面,identity;contact\n"
        "B,internal,,刘备,13922224444,v3,2025-05-01T10:00:00,书面,identity;contact,extra\n",
        encoding="utf-8",
    )
    store.settings.import_parallel_bytes = 0
    answers = []
    for workers in (0, 1):
        store.settings.import_workers = workers
        with pytest.raises(ImportFailed) as exc:
            import_file(store, path, owner="zhang.wei", actor=SALES)
        answers.append(exc.value.rows)
    assert answers[0] == answers[1]
    assert [line for line, _ in answers[0]] == [3, 4]
    assert "more cells" in answers[0][1][1]
    path.write_text("\n".join(path.read_text(encoding="utf-8").splitlines()[:2]) + "\n", "utf-8")
    report = import_file(store, path, owner="zhang.wei", actor=SALES)
    view = store.reader.read(str(report.first), ["identity", "contact"], actor=SALES)
    assert view.content == {
        "identity": {"name": "关羽"},
        "contact": {"mobile_phone": "13922223333"},
    }


def test_numbering_as_read() -> None:
    numbering = import_workers.Numbering(2026, 7)
    assert numbering.assign('{"owner": "zhang.wei"}\n') == "KH-2026-000007"
    assert numbering.assign('{"archive_no": null}') == "KH-2026-000008"
    assert numbering.assign({"archive_no": ""}) == "KH-2026-000009"  # a CSV cell left empty
    # A row's own number of the same year moves the next ones past it; another year's not.
    assert numbering.assign('{"archive_no": "KH-2026-000020"}') is None
    assert numbering.assign('{"archive_no": "KH-2025-000900"}') is None
    assert numbering.assign({"archive_no": "KH-2026-000015"}) is None
    assert numbering.assign(ValidationFailed("not valid JSON")) is None
    # Bad JSON is the worker's to name; a number given to it is never written.
    assert numbering.assign('{"archive_no": "KH-2026-0') is None
    assert numbering.assign('{"grade": "A"}') == "KH-2026-000021"
    numbering.next = 999_999
    assert numbering.assign("{}") == "KH-2026-999999"
    with pytest.raises(Conflict, match="exhausted"):
        numbering.assign("{}")


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_rows_named_with_numbers_of_this_year_are_never_given_twice(
    store: ArchiveStore, tmp_path: Path, workers: int
) -> None:
    store.settings.import_workers, store.settings.import_parallel_bytes = workers, 0
    store.settings.import_batch = 3
    year = store.clock().year
    rows: list[Any] = list(SyntheticArchives(seed=16).many(7))
    rows[1]["archive_no"] = f"KH-{year}-000004"
    rows[5]["archive_no"] = f"KH-{year}-000010"
    report = import_file(store, _write(tmp_path / "rows.jsonl", rows), owner=None, actor=SALES)
    assert report.imported == 7
    numbers = {m.archive_no for m in store.archives.list(actor=SALES, limit=50).items}
    assert len(numbers) == 7
    assert {f"KH-{year}-000004", f"KH-{year}-000010"} <= numbers
    for no in numbers:  # every group of every archive opens under its number
        assert store.reader.read(no, list(store.schema.groups), actor=SALES).content
    # The counter is past every number the import wrote.
    assert store.filing.create(rows[0] | {"archive_no": None}, actor=SALES).archive_no > max(
        numbers
    )
