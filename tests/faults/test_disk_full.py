"""SQLite's disk full (SQLITE_FULL): a write is refused with a clear error, the database
stays whole, and writes work again once there is space, without a restart.

"Full" is the database's page limit (``PRAGMA max_page_count``, set on every
connection the program takes, see ``tests.faults.hold``) lowered to the pages the
file has: any write that needs the file to grow fails exactly as on a full disk.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest

from foundation.db import is_storage_full
from tests.api.conftest import PASSWORD
from tests.factories import archive
from tests.faults.conftest import count, entries
from tests.faults.kill import HELD_CLI, audit_verifies, cli, write_jsonl
from tests.served import ROOT, served_cli

pytestmark = pytest.mark.slow


@pytest.fixture
def sqlite_only(backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("SQLITE_FULL is SQLite's (a full PostgreSQL disk is the server's to report)")


def _fill_up(db: Path, pages: Path) -> None:
    """The database is full from now on: no page beyond those it has."""
    with sqlite3.connect(db) as conn:
        pages.write_text(str(conn.execute("PRAGMA page_count").fetchone()[0]))


def _whole(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def _body(n: int) -> dict:
    body = archive(profile={"name": f"满盘客户{n}", "mobile_phone": f"1370000{n:04d}",
                            "company": "满" * 2000})  # fmt: skip
    body.pop("owner", None)
    return body


def test_a_write_on_a_full_disk_is_a_507_and_writes_resume_with_space(
    sqlite_only, api_vault, env, tmp_path
) -> None:
    db = Path(api_vault.engine.url.database or "")
    pages = tmp_path / "pages"
    pages.write_text("")
    limited = {**env, "FAULT_SQLITE_PAGES": str(pages)}
    with served_cli(api_vault.settings.data_dir, env=limited, command=HELD_CLI) as served:
        r = httpx.post(f"{served.base}/auth/token",
                       data={"username": "zhang.wei", "password": PASSWORD}, timeout=60)  # fmt: skip
        auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
        _fill_up(db, pages)
        answers = []
        for n in range(60):  # until the file would have to grow
            r = httpx.post(f"{served.base}/customers", json=_body(n), headers=auth, timeout=60)
            answers.append(r)
            if r.status_code != 201:
                break
        full = answers[-1]
        assert full.status_code == 507, full.text
        assert full.headers["content-type"].startswith("application/problem+json")
        problem = full.json()
        assert problem["type"].endswith("storage-full") and "full" in problem["detail"]
        assert "满盘客户" not in json.dumps(problem, ensure_ascii=False)
        made = len(answers) - 1
        _whole(db)
        assert count(api_vault, "archive") == made  # nothing of the refused write
        assert entries(api_vault, "archive:create") == made
        audit_verifies(env)

        pages.write_text("")  # space again
        r = httpx.post(f"{served.base}/customers", json=_body(99), headers=auth, timeout=60)
        assert r.status_code == 201, r.text
    _whole(db)
    audit_verifies(env)


def test_an_import_on_a_full_disk_is_one_line_and_imports_nothing(
    sqlite_only, api_vault, env, tmp_path
) -> None:
    db = Path(api_vault.engine.url.database or "")
    pages = tmp_path / "pages"
    source = str(write_jsonl(tmp_path / "rows.jsonl", [
        {**_body(n), "owner": "zhang.wei"} for n in range(40)
    ]))  # fmt: skip
    _fill_up(db, pages)
    # The vault has an administrator: an import runs as one (``--as``).
    env = {**env, "VAULT_OPERATOR": "admin", "VAULT_OPERATOR_PASSWORD": PASSWORD}
    limited = {**env, "FAULT_SQLITE_PAGES": str(pages)}
    proc = subprocess.run([*HELD_CLI, "customer", "import", source], env=limited, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "full" in lines[0] and "Traceback" not in proc.stderr, lines
    assert count(api_vault, "archive") == 0
    _whole(db)
    audit_verifies(env)
    out = cli(env, "customer", "import", source)
    assert "Imported 40 archives" in out.stdout


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__("driver message")
        self.sqlstate = sqlstate


def test_a_full_disk_is_told_from_a_database_that_is_down() -> None:
    assert is_storage_full(sqlite3.OperationalError("database or disk is full"))
    assert is_storage_full(_PgError("53100"))  # PostgreSQL's disk_full
    try:  # as the audit log raises it: the driver's error is the cause
        try:
            raise _PgError("53100")
        except _PgError as cause:
            raise RuntimeError("could not append") from cause
    except RuntimeError as wrapped:
        assert is_storage_full(wrapped)
    assert not is_storage_full(sqlite3.OperationalError("database is locked"))
    assert not is_storage_full(_PgError("57P01"))  # admin_shutdown: down, not full
    assert not is_storage_full(_PgError("53200"))  # out of memory
    assert not is_storage_full(None)
