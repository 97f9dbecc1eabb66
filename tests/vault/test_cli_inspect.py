"""``archive-vault inspect`` as an operator meets it: report files, their check, the half year."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.vault.test_cli import run


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "var"
    run("init", "--demo", data=path)
    run("seed", "--customers", "30", data=path)
    return path


def test_inspect_writes_a_signed_report_that_verifies(data: Path, tmp_path: Path) -> None:
    due = run("inspect", "--due", data=data, check=False)
    assert due.returncode == 1 and "no inspection" in due.stdout
    out, page = tmp_path / "report.json", tmp_path / "report.html"
    proc = run("inspect", "--out", str(out), "--html", str(page), data=data)
    assert "recorded in the audit log" in proc.stdout
    doc = json.loads(out.read_text("utf-8"))
    body = doc["body"]
    assert body["integrity_ok"] and body["content"]["archives_checked"] == 30
    assert body["content"]["kinds"]["group"]["ok"] > 30
    assert "<html" in page.read_text("utf-8")
    assert run("inspect", "verify", str(out), data=data).returncode == 0
    pem = tmp_path / "audit.pem"
    pem.write_text(run("audit", "pubkey", data=data).stdout)
    offline = run("inspect", "verify", str(out), "--pubkey", str(pem), data=data)
    assert "pinned key" in offline.stdout
    doc["body"]["findings"]["overdue_loans"]["total"] = 0
    doc["body"]["by"] = "someone else"
    out.write_text(json.dumps(doc), "utf-8")
    bad = run("inspect", "verify", str(out), data=data, check=False)
    assert bad.returncode == 1 and "FAILED" in bad.stderr
    (tmp_path / "junk.json").write_text("not json")
    junk = run("inspect", "verify", str(tmp_path / "junk.json"), data=data, check=False)
    assert junk.returncode == 2 and "cannot read" in junk.stderr
    assert run("inspect", "--due", data=data).returncode == 0
    assert "last inspection IN-" in run("sweep", data=data).stdout
    listed = run("inspect", "list", data=data).stdout
    assert "IN-" in listed and body["inspection"] in listed
    log = run("audit", "log", "--action", "vault:inspect", data=data)
    assert "1 entries" in log.stdout


def test_a_report_is_never_written_through_a_planted_link(tmp_path: Path) -> None:
    """The temporary file's name is predictable: a link planted under it in a shared
    directory must not redirect the write onto another file."""
    from cli.inspect import _write

    victim = tmp_path / "victim"
    victim.write_text("keep me")
    out = tmp_path / "report.json"
    (tmp_path / f".{out.name}.{os.getpid()}.tmp").symlink_to(victim)
    _write(out, "the report\n")
    assert victim.read_text() == "keep me"
    assert out.read_text() == "the report\n" and not out.is_symlink()
    assert stat.S_IMODE(out.stat().st_mode) & 0o077 == 0
