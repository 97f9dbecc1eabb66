"""``archive-vault audit ...`` commands: output, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from audit.checkpoint import public_key_pem
from audit.guards import remove_guards
from audit.log import AuditLog
from cli import audit as cli_audit
from cli import verifier as cli_verifier
from cli.audit import audit_app
from foundation.db import make_engine
from foundation.settings import Settings
from vault.vault import init_vault

from .conftest import append_n

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("VAULT_DATABASE_URL", raising=False)
    monkeypatch.delenv("VAULT_KEY_FILE", raising=False)
    data = tmp_path / "var"
    vault = init_vault(Settings(data_dir=data))
    log = AuditLog(
        engine=vault.engine, keys=vault.keys, settings=vault.settings, auto_checkpoint=False
    )
    append_n(log, 12)
    vault.engine.dispose()
    return data


def _run(*args: str):
    return runner.invoke(audit_app, list(args), catch_exceptions=False)


def test_verify_ok(data_dir: Path) -> None:
    result = _run("verify", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert "OK: 12 entries" in result.output


def test_verify_names_the_first_bad_entry(data_dir: Path) -> None:
    engine = make_engine(f"sqlite:///{data_dir / 'vault.db'}")
    remove_guards(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_entry SET purpose = 'x' WHERE seq = 4")
    engine.dispose()
    result = _run("verify", "--data-dir", str(data_dir))
    assert result.exit_code == 1
    assert "entry 4" in result.output and "Traceback" not in result.output


def test_checkpoint_export_and_verify_bundle(data_dir: Path, tmp_path: Path) -> None:
    result = _run("checkpoint", "--data-dir", str(data_dir))
    assert result.exit_code == 0 and "12 entries" in result.output
    assert "nothing new" in _run("checkpoint", "--data-dir", str(data_dir)).output
    out = tmp_path / "bundle.json"
    result = _run("export", "--out", str(out), "--prove", "3", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["inclusion_proofs"][0]["seq"] == 3
    key = tmp_path / "key.pem"
    key.write_text(_run("pubkey", "--data-dir", str(data_dir)).output)
    state = tmp_path / "state.json"
    result = _run("verify-bundle", str(out), "--pubkey", str(key), "--state", str(state))
    assert result.exit_code == 0, result.output
    assert state.exists()
    bundle = json.loads(out.read_text())
    bundle["entries"][0]["actor"] = "mallory"
    out.write_text(json.dumps(bundle))
    result = _run("verify-bundle", str(out), "--pubkey", str(key))
    assert result.exit_code == 1 and "entry 1" in result.output


def test_pubkey_formats(data_dir: Path) -> None:
    assert "BEGIN PUBLIC KEY" in _run("pubkey", "--data-dir", str(data_dir)).output
    assert _run("pubkey", "--note", "--data-dir", str(data_dir)).output.startswith(
        "archive-vault/audit/"
    )


def test_log_table_and_filters(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_audit.console, "width", 200)
    result = _run("log", "--data-dir", str(data_dir), "--actor", "user1", "--limit", "2")
    assert result.exit_code == 0, result.output
    assert "KH-00010" in result.output and "2 entries" in result.output
    result = _run("log", "--data-dir", str(data_dir), "--since", "yesterday")
    assert result.exit_code == 2 and "not an ISO date" in result.output
    # Past what a database's OFFSET takes: named as a bad option, not an internal error.
    result = _run("log", "--data-dir", str(data_dir), "--offset", str(2**63))
    assert result.exit_code == 2 and "--offset" in result.output


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    result = _run("verify", "--data-dir", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert "error:" in result.output and "Traceback" not in result.output
    result = _run("verify-bundle", str(tmp_path / "missing.json"))
    assert result.exit_code == 2 and "cannot read" in result.output


def test_verify_in_worker_processes_keeps_the_state_check(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`audit verify --state` on the ranged path (workers forced on a small log)."""
    from audit import verify_db

    monkeypatch.setattr(verify_db, "PARALLEL_FROM", 1)
    monkeypatch.setattr(verify_db, "default_workers", lambda: 2)
    ranged: list[int] = []
    real = verify_db.run_ranges

    def spy(*args: object, **kw: object) -> object:
        ranged.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(verify_db, "run_ranges", spy)
    state = tmp_path / "state.json"
    assert "checkpoint" in _run("checkpoint", "--data-dir", str(data_dir)).output
    result = _run("verify", "--data-dir", str(data_dir), "--state", str(state))
    assert result.exit_code == 0 and "OK: 12 entries" in result.output, result.output
    kept = state.read_text()
    engine = make_engine(f"sqlite:///{data_dir / 'vault.db'}")
    remove_guards(engine)
    with engine.begin() as conn:  # the tail cut together with its checkpoint
        conn.exec_driver_sql("DELETE FROM audit_entry WHERE seq > 6")
        conn.exec_driver_sql("DELETE FROM audit_checkpoint")
    engine.dispose()
    result = _run("verify", "--data-dir", str(data_dir), "--state", str(state))
    assert result.exit_code == 1 and "FAILED" in result.output
    assert state.read_text() == kept
    result = _run("verify", "--data-dir", str(data_dir))
    assert result.exit_code == 0 and "OK: 6 entries" in result.output
    assert len(ranged) == 3


def test_the_auditors_verifier_runs_alone_and_pins_the_key(data_dir: Path, tmp_path: Path) -> None:
    """What ``audit verifier`` writes checks a bundle with nothing of the vault installed
    beside it, and refuses a bundle signed by another key than the pinned one."""
    out = tmp_path / "for-the-auditor"
    result = _run("verifier", "--out", str(out), "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "audit").iterdir()) == [
        "__init__.py",
        "checkpoint.py",
        "merkle.py",
        "verify.py",
    ]
    pem = (out / "audit.pem").read_text()
    assert cli_verifier.fingerprint(pem) in (out / "README.txt").read_text()
    assert "PRIVATE" not in "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    bundle = tmp_path / "bundle.json"
    assert _run("export", "--out", str(bundle), "--data-dir", str(data_dir)).exit_code == 0

    def verify(pubkey: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "audit.verify", "--pubkey", str(pubkey), str(bundle)],
            cwd=out,
            capture_output=True,
            text=True,
            timeout=120,
        )

    where = subprocess.run(
        [sys.executable, "-c", "import audit.verify as v, sys; print(v.__file__)"],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.stdout.strip() == str(out / "audit" / "verify.py")  # its own copy is used
    good = verify(out / "audit.pem")
    assert good.returncode == 0 and "OK: 12 entries" in good.stdout, good.stdout + good.stderr
    other = tmp_path / "other.pem"
    other.write_text(public_key_pem(Ed25519PrivateKey.generate().public_key()))
    assert verify(other).returncode != 0
    again = _run("verifier", "--out", str(out), "--data-dir", str(data_dir))
    assert again.exit_code == 2 and "already exists" in again.output


def test_undecodable_arguments_and_times_without_utc_form_are_usage_errors(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Bytes that are not UTF-8 reach Python as lone surrogates, which neither database's
    driver encodes; a time such as 0001-01-01T00:00+12:00 has no UTC form. Both were
    internal errors (exit 70) once the value reached a query; now a usage error (2)."""
    data = tmp_path / "var"

    def cli(*args: str | bytes) -> subprocess.CompletedProcess[bytes]:
        argv = [a if isinstance(a, bytes) else a.encode() for a in args]
        return subprocess.run(
            [sys.executable.encode(), b"-m", b"cli.main", *argv, b"--data-dir", bytes(data)],
            capture_output=True,
            env=cli_env,
            timeout=300,
        )

    assert cli("init").returncode == 0
    for args in (
        ("audit", "log", "--actor", b"li\xffna"),
        ("audit", "log", "--archive", b"KH-\xff"),
        ("policy", "explain", "--user", b"\xff", "--action", "read"),
        ("user", "disable", b"\xe6\x9d"),
    ):
        proc = cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert b"is not valid UTF-8" in proc.stderr and b"Traceback" not in proc.stderr
    for option, value in (
        ("--since", "0001-01-01T00:00:00+12:00"),
        ("--until", "9999-12-31T23:59:59-12:00"),
    ):
        proc = cli("audit", "log", option, value)
        assert proc.returncode == 2, (option, proc.stderr)
        assert b"outside the calendar" in proc.stderr and option.encode() in proc.stderr


def test_the_state_file_is_never_written_through_a_planted_link(
    data_dir: Path, tmp_path: Path
) -> None:
    """``STATE.tmp`` is a predictable name: a link planted there must not make the
    verifying account write the state over another file."""
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    state = tmp_path / "state.json"
    (tmp_path / "state.json.tmp").symlink_to(victim)
    assert "checkpoint" in _run("checkpoint", "--data-dir", str(data_dir)).output
    result = _run("verify", "--data-dir", str(data_dir), "--state", str(state))
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "keep me"
    assert json.loads(state.read_text())["size"] == 12 and not state.is_symlink()
