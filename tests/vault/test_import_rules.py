"""The import applies the filing rules: important clients short of a second contact
are imported with a warning (篇七); kept archives without a proper custodian are
refused row by row (Art 22), and then nothing is imported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from foundation.db import transaction
from policies.archive_creation import import_check
from policies.directory import add_user
from tests.factories import SALES, archive
from tests.vault.test_cli import _add, run
from vault.importer import ImportFailed, import_file
from vault.store import ArchiveStore


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", "utf-8")
    return path


def test_important_clients_short_of_a_contact_are_imported_with_a_warning(
    store: ArchiveStore, tmp_path: Path
) -> None:
    rows = [
        archive(grade="A"),  # line 1: owner alone
        archive(grade="A", contacts=["zhang.wei"]),  # line 2: the owner does not count twice
        archive(grade="A", contacts=["li.na"]),
        archive(grade="B"),
    ]
    report = import_file(store, _jsonl(tmp_path / "a.jsonl", rows), owner=None, actor=SALES)
    assert report.imported == 4
    assert [(line, no) for line, no, _ in report.warnings] == [
        (1, report.first),
        (2, f"{report.first[:-6]}{int(report.first[-6:]) + 1:06d}"),
    ]
    assert all("grade A is an important client" in w for *_, w in report.warnings)
    assert all("王小明" not in w and "13800138000" not in w for *_, w in report.warnings)
    store.settings.important_grades = ["B"]
    report = import_file(store, _jsonl(tmp_path / "b.jsonl", rows), owner=None, actor=SALES)
    assert [line for line, *_ in report.warnings] == [4]


def test_kept_archives_without_a_proper_custodian_are_refused(
    store: ArchiveStore, tmp_path: Path
) -> None:
    with transaction(store.engine) as s:
        for name, roles, dept in (
            ("zhang.wei", ["salesperson"], "销售一部"),
            ("li.na", ["salesperson"], "销售一部"),
            ("dual", ["salesperson", "information_officer"], "销售一部"),
            ("chen.jing", ["information_officer"], "客户服务部"),
            ("old.officer", ["information_officer"], "客户服务部"),
        ):
            add_user(s, username=name, roles=roles, department=dept)
        gone = add_user(s, username="gone", roles=["info_supervisor"], department="客户服务部")
        gone.disabled = True
        s.add(gone)
    rows = [
        archive(classification="secret"),  # 1: none
        archive(classification="secret", custodian="li.na"),  # 2: a salesperson
        archive(classification="top_secret", custodian="gone"),  # 3: disabled
        archive(classification="secret", owner="dual", custodian="dual"),  # 4: the owner
        archive(classification="secret", custodian="dual", contacts=["dual"]),  # 5: a contact
        archive(classification="top_secret", custodian="chen.jing"),  # fine
    ]
    with pytest.raises(ImportFailed) as failed:
        import_file(
            store,
            _jsonl(tmp_path / "kept.jsonl", rows),
            owner=None,
            actor=SALES,
            check=import_check(),
        )
    problems = dict(failed.value.rows)
    assert sorted(problems) == [1, 2, 3, 4, 5]
    assert "a secret archive needs a custodian" in problems[1]
    assert "not an information officer" in problems[2]
    assert "disabled" in problems[3]
    assert "owns the archive" in problems[4]
    assert "listed as a contact" in problems[5]
    assert store.archives.list(actor=SALES).total == 0


def test_the_cli_prints_a_warning_per_important_client_short_of_contacts(tmp_path: Path) -> None:
    data = tmp_path / "var"
    run("init", "--demo", data=data)
    _add(data, "zhang.wei", "salesperson", "销售一部")
    src = _jsonl(tmp_path / "a.jsonl", [archive(grade="B"), archive(grade="A")])
    proc = run("customer", "import", str(src), data=data)
    assert "Imported 2 archives" in proc.stdout
    err = " ".join(proc.stderr.split())
    assert "warning: line 2 (KH-" in err and "important client" in err
    assert "line 1" not in err and "王小明" not in proc.stderr
