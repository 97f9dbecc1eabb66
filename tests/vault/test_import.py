"""Import is all-or-nothing and names every bad row with its line number."""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.factories import SALES, archive, consent
from vault.errors import ValidationFailed
from vault.importer import ImportFailed, import_file
from vault.seed import DEMO_CUSTODIAN, SyntheticArchives
from vault.store import ArchiveStore


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows)
        + "\n",
        encoding="utf-8",
    )
    return path


def test_jsonl_import(store: ArchiveStore, tmp_path: Path) -> None:
    rows = [
        archive(profile={"name": f"客户{i}", "mobile_phone": f"1390000{i:04d}"}) for i in range(5)
    ]
    for r in rows:
        del r["owner"]
    report = import_file(
        store, _write_jsonl(tmp_path / "a.jsonl", rows), owner="li.na", actor=SALES
    )
    assert report.imported == 5
    page = store.archives.list(actor=SALES, owner="li.na")
    assert page.total == 5
    found = store.archives.search("mobile_phone", "139 0000 0003", actor=SALES)
    assert (
        store.reader.read(found[0].archive_no, ["identity"], actor=SALES).content["identity"][
            "name"
        ]
        == "客户3"
    )


def test_bad_file_imports_nothing_and_lists_every_bad_row(
    store: ArchiveStore, tmp_path: Path
) -> None:
    rows = [
        archive(),
        archive(classification="top_secret"),  # line 2: no custodian
        "{not json",  # line 3
        archive(profile={"mobile_phone": "12"}, grade="Z"),  # line 4: two problems
        archive(consent=consent(sensitive=[])),  # line 5: sensitive without consent
        archive(),
    ]
    with pytest.raises(ImportFailed) as exc:
        import_file(store, _write_jsonl(tmp_path / "bad.jsonl", rows), owner=None, actor=SALES)
    lines = dict(exc.value.rows)
    assert sorted(lines) == [2, 3, 4, 5]
    assert "custodian" in lines[2] and "not valid JSON" in lines[3]
    assert "grade" in lines[4] and "mobile_phone" in lines[4]
    assert "separate consent" in lines[5]
    assert store.archives.list(actor=SALES).total == 0


def test_csv_import(store: ArchiveStore, tmp_path: Path) -> None:
    path = tmp_path / "clients.csv"
    path.write_text(
        "archive_no,grade,classification,custodian,name,mobile_phone,health,consent.notice,consent.at,"
        "consent.channel,consent.groups,consent.sensitive_groups\n"
        "KH-2025-000007,A,secret,chen.jing,刘备,+86 138 1111 2222,良好,v3,2025-05-01T10:00:00,书面,"
        "identity contact health,health\n"
        ",B,internal,,关羽,13922223333,,v3,2025-05-01T10:00:00,书面,identity;contact,\n",
        encoding="utf-8",
    )
    report = import_file(store, path, owner="zhang.wei", actor=SALES)
    assert report.imported == 2
    secret = store.reader.read("KH-2025-000007", actor=SALES)
    assert secret.meta.classification == "secret" and secret.content["health"] == {"health": "良好"}
    assert secret.content["contact"] == {"mobile_phone": "13811112222"}


def test_csv_with_unknown_column_is_refused(store: ArchiveStore, tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("name,shoe_size\n张三,42\n", encoding="utf-8")
    with pytest.raises(ImportFailed) as exc:
        import_file(store, path, owner="zhang.wei", actor=SALES)
    assert exc.value.rows[0][0] == 2 and "shoe_size" in exc.value.rows[0][1]


def test_duplicate_archive_numbers(store: ArchiveStore, tmp_path: Path) -> None:
    store.filing.create(archive(archive_no="KH-2024-000001"), actor=SALES)
    rows = [
        archive(archive_no="KH-2024-000002"),
        archive(archive_no="KH-2024-000002"),
        archive(archive_no="KH-2024-000001"),
    ]
    with pytest.raises(ImportFailed) as exc:
        import_file(store, _write_jsonl(tmp_path / "d.jsonl", rows), owner=None, actor=SALES)
    reasons = dict(exc.value.rows)
    assert "repeats line 1" in reasons[2] and "already exists" in reasons[3]


def test_explicit_numbers_move_the_counter(store: ArchiveStore, tmp_path: Path) -> None:
    year = store.clock().year
    import_file(
        store,
        _write_jsonl(tmp_path / "e.jsonl", [archive(archive_no=f"KH-{year}-000500")]),
        owner=None,
        actor=SALES,
    )
    assert store.filing.create(archive(), actor=SALES).archive_no == f"KH-{year}-000501"


def test_crash_midway_leaves_nothing(store: ArchiveStore, tmp_path: Path, monkeypatch) -> None:
    store.settings.import_batch = 2
    path = _write_jsonl(tmp_path / "f.jsonl", [archive() for _ in range(7)])
    real = store.filing.insert_many
    calls = []

    def crashing(session, records):
        calls.append(len(records))
        if len(calls) == 3:
            raise MemoryError("simulated crash")
        return real(session, records)

    monkeypatch.setattr(store.filing, "insert_many", crashing)
    with pytest.raises(MemoryError):
        import_file(store, path, owner=None, actor=SALES)
    assert calls == [2, 2, 2]
    assert store.archives.list(actor=SALES).total == 0


def test_empty_and_unreadable_files(store: ArchiveStore, tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match="holds no archives"):
        import_file(store, _write_jsonl(tmp_path / "g.jsonl", [""]), owner=None, actor=SALES)
    with pytest.raises(ValidationFailed, match="cannot read"):
        import_file(store, tmp_path / "missing.jsonl", owner=None, actor=SALES)
    with pytest.raises(ValidationFailed, match="--format"):
        import_file(store, tmp_path / "x.xlsx", owner=None, actor=SALES)
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises((ValidationFailed, ImportFailed)):
        import_file(store, tmp_path / "bin.jsonl", owner=None, actor=SALES)


# Runs the CLI with one hook on the import's own progress reports: once it reports
# 2,000 rows imported (two batches written, inside what must be one transaction), the
# hook says so on stderr and waits there to be killed.
_HOLD_WHILE_WRITING = textwrap.dedent(
    """
    import runpy, sys, time

    import vault.importer

    real_import_file = vault.importer.import_file

    def import_file(*args, progress=None, **kw):
        def report(phase, done, total):
            if progress is not None:
                progress(phase, done, total)
            if phase == "importing" and done >= 2000:
                print("WRITING", file=sys.stderr, flush=True)
                time.sleep(600)

        return real_import_file(*args, progress=report, **kw)

    vault.importer.import_file = import_file
    sys.argv = ["archive-vault", *sys.argv[1:]]
    runpy.run_module("cli.main", run_name="__main__", alter_sys=True)
    """
)


def _wait_for_line(proc: subprocess.Popen, marker: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while True:
        left = deadline - time.monotonic()
        ready = select.select([proc.stderr], [], [], max(left, 0))[0] if left > 0 else []
        if not ready:
            proc.kill()
            pytest.fail(f"the import did not start writing within {timeout:.0f}s: {seen[-5:]}")
        line = proc.stderr.readline()
        if not line:
            pytest.fail(f"the import ended before writing: {seen[-5:]}")
        if line.strip() == marker:
            return
        seen.append(line)


def test_killed_import_is_all_or_nothing(tmp_path: Path, backend: str) -> None:
    """Killed with 2,000 of its 6,000 rows written (two batches), the import leaves nothing."""
    if backend != "sqlite":
        pytest.skip("the CLI kill test runs on the embedded vault")
    data = tmp_path / "var"
    env = {**os.environ, "VAULT_DATA_DIR": str(data), "VAULT_IMPORT_BATCH": "1000"}
    cli = [sys.executable, "-m", "cli.main"]
    subprocess.run([*cli, "init"], check=True, env=env, capture_output=True)

    # The rows' secret archives name this custodian; the import checks who it is.
    officer = ["--role", "information_officer", "--department", "客户服务部"]
    subprocess.run(
        [*cli, "user", "add", DEMO_CUSTODIAN, *officer, "--password-stdin"],
        check=True,
        env=env,
        capture_output=True,
        input=b"a long enough password\n",
    )

    rows = list(SyntheticArchives(seed=1, pool=50, custodian=DEMO_CUSTODIAN).many(6000))
    _write_jsonl(tmp_path / "big.jsonl", rows)
    source = str(tmp_path / "big.jsonl")
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD_WHILE_WRITING, "customer", "import", source],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_line(proc, "WRITING", timeout=120)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    conn = sqlite3.connect(data / "vault.db")
    count = conn.execute("SELECT count(*) FROM archive").fetchone()[0]
    conn.close()
    assert count == 0


def test_known_users_refuses_archives_nobody_could_work_on(
    store: ArchiveStore, tmp_path: Path
) -> None:
    rows = [archive(), archive(owner="ghost.user"), archive(contacts=["nobody.x"])]
    with pytest.raises(ImportFailed) as exc:
        import_file(
            store,
            _write_jsonl(tmp_path / "p.jsonl", rows),
            owner=None,
            actor=SALES,
            known_users={"zhang.wei"},
        )
    reasons = dict(exc.value.rows)
    assert sorted(reasons) == [2, 3]
    assert "owner ghost.user" in reasons[2] and "contact nobody.x" in reasons[3]
    report = import_file(
        store,
        _write_jsonl(tmp_path / "q.jsonl", [archive()]),
        owner=None,
        actor=SALES,
        known_users={"zhang.wei"},
    )
    assert report.imported == 1 and report.people == {"zhang.wei"}
