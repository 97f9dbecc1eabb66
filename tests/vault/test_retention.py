"""An archive is never filed with its retention date already past (API body or import)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.factories import SALES, archive
from vault.errors import ValidationFailed
from vault.importer import ImportFailed, import_file
from vault.store import ArchiveStore


def _today(store: ArchiveStore) -> date:
    """The store's date in Beijing, read when the test runs: a date taken at import turns
    into yesterday for a run that crosses Beijing's midnight (16:00 UTC)."""
    return store.clock().astimezone(ZoneInfo("Asia/Shanghai")).date()


def test_prepare_refuses_a_past_retention_date_naming_the_field(store: ArchiveStore) -> None:
    today = _today(store)
    with pytest.raises(ValidationFailed, match="retention_until is in the past"):
        store.filing.prepare(archive(retention_until=(today - timedelta(days=1)).isoformat()))
    assert store.filing.prepare(archive(retention_until=today.isoformat())).retention_until == today


def test_import_refuses_the_file_and_lists_the_row(store: ArchiveStore, tmp_path: Path) -> None:
    rows = [archive(), archive(retention_until="2020-01-01"), archive()]
    src = tmp_path / "old.jsonl"
    src.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    with pytest.raises(ImportFailed) as exc:
        import_file(store, src, owner=None, actor=SALES)
    assert [line for line, _ in exc.value.rows] == [2]
    assert "retention_until" in exc.value.rows[0][1]
    assert store.archives.list(actor=SALES, audit=False).total == 0
