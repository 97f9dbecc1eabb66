"""``archive-vault backup`` and ``restore``: the restored vault has one history, not two.

A backup, then work (a destruction, a key rotation), an exported bundle; the
backup restored into a fresh database must bring back the bundle's entries with
their very hashes (a checkpoint signed before the restore is consistent with
one signed after), keep the destroyed archive destroyed and read every other
one. Refusals (no newer bundle, a tampered one, the wrong key file) change
nothing. Runs on SQLite and on PostgreSQL (a fresh database per test).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from api.security import TokenService
from audit.checkpoint import open_checkpoint
from audit.events import Actor
from audit.merkle import verify_consistency
from audit.models import entry_table
from foundation.settings import Settings
from vault.backup import manifest_mac
from vault.errors import ArchiveDestroyed, RestoreIncomplete
from vault.models import User
from vault.store import ArchiveStore
from vault.vault import open_vault

from ..conftest import PG_URL

OFFICER = Actor("chen.jing", "information_officer")
READER = Actor("cli:test", "system")
GONE = "KH-2026-000002"


def _cli(*args: str, data: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    # The console wraps long lines: compare the words.
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout, " ".join(proc.stderr.split())
    )


def _ok(*args: str, data: Path, env: dict[str, str]) -> str:
    proc = _cli(*args, data=data, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def fresh_url(backend: str, cli_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """An empty database to restore into: a new SQLite file, or a new PostgreSQL database."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'restored.db'}"
        return
    name = "r_" + secrets.token_hex(6)
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    source = sa.make_url(cli_env["VAULT_DATABASE_URL"])
    url = source.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def _settings(data: Path, env: dict[str, str]) -> Settings:
    return Settings(
        data_dir=data,
        database_url=env.get("VAULT_DATABASE_URL", ""),
        key_file=Path(env["VAULT_KEY_FILE"]) if "VAULT_KEY_FILE" in env else None,
    )


def _target_is_untouched(url: str) -> bool:
    if url.startswith("sqlite"):
        return not Path(sa.make_url(url).database or "").exists()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return not conn.exec_driver_sql(
                "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN "
                "('pg_catalog', 'information_schema')"
            ).scalar_one()
    finally:
        engine.dispose()


@pytest.mark.slow
def test_a_restore_extends_the_published_log_and_keeps_destructions(
    cli_env: dict[str, str], fresh_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "var"
    _ok("init", "--demo", data=data, env=cli_env)
    _ok("seed", "--customers", "6", data=data, env=cli_env)
    out = tmp_path / "backup-1"
    _ok("backup", "--out", str(out), data=data, env=cli_env)
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    files = sorted(p.name for p in out.iterdir())
    assert files[0] == "audit-bundle.json" and files[-1] == "manifest.json" and len(files) == 3
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in out.iterdir())
    key_file = data / "keys" / "keyring.json"
    assert not any(p.read_bytes() == key_file.read_bytes() for p in out.iterdir())
    # The pairing rule: the key file is copied apart, with the backups of its time.
    paired = tmp_path / "keys-of-backup-1.json"
    shutil.copy(key_file, paired)
    paired.chmod(0o600)

    settings = _settings(data, cli_env)
    vault = open_vault(settings)
    store = ArchiveStore(vault)
    numbers = [m.archive_no for m in store.archives.list(actor=READER, limit=50, audit=False).items]
    store.lifecycle.destroy(GONE, actor=OFFICER, reason="保管期满")
    vault.engine.dispose()
    _ok("keys", "rotate", data=data, env=cli_env)
    newer = tmp_path / "newer.json"
    _ok("audit", "export", "--out", str(newer), data=data, env=cli_env)
    published = json.loads(newer.read_text())
    before = open_checkpoint(
        published["checkpoints"][-1]["note"], vault.audit_log().public_key, published["origin"]
    )
    assert before.size == len(published["entries"])

    target = {**cli_env, "VAULT_DATABASE_URL": fresh_url}
    # Without the newer bundle: refused, and the data directory says which one to give.
    no_bundle = _cli("restore", str(out), data=data, env=target)
    assert no_bundle.returncode == 1
    assert "newer audit log was exported" in no_bundle.stderr and "--bundle" in no_bundle.stderr
    assert _target_is_untouched(fresh_url)
    # A tampered bundle: refused before anything changes.
    forged = tmp_path / "forged.json"
    forged.write_text(newer.read_text().replace(GONE, "KH-2026-000003"))
    tampered = _cli("restore", str(out), "--bundle", str(forged), data=data, env=target)
    assert tampered.returncode == 1 and "does not verify" in tampered.stderr
    assert _target_is_untouched(fresh_url)
    # The current key file retired the key the backup's archives are wrapped under.
    wrong_keys = _cli("restore", str(out), "--bundle", str(newer), data=data, env=target)
    assert wrong_keys.returncode == 1
    assert (
        "retired in the key file" in wrong_keys.stderr
        and "nothing was changed" in wrong_keys.stderr
    )
    assert _target_is_untouched(fresh_url)

    restored_env = {**target, "VAULT_KEY_FILE": str(paired)}
    done = _ok("restore", str(out), "--bundle", str(newer), data=data, env=restored_env)
    assert "re-destroyed 1 archive" in done

    after_settings = _settings(data, restored_env)
    restored = open_vault(after_settings)
    after_store = ArchiveStore(restored)
    assert after_store.reader.meta(GONE).status == "destroyed"
    with pytest.raises(ArchiveDestroyed):
        after_store.reader.read(GONE, actor=READER)
    assert len(numbers) == 6 and GONE in numbers
    for no in numbers:
        if no != GONE:
            assert after_store.reader.read(no, actor=READER).content  # decrypts
    restored.engine.dispose()
    verified = _ok("audit", "verify", data=data, env=restored_env)
    assert verified.startswith("OK")

    # One history: every published entry is in the restored log with its very hash.
    with restored.engine.connect() as conn:
        hashes = dict(conn.execute(sa.select(entry_table.c.seq, entry_table.c.entry_hash)).all())
    for entry in published["entries"]:
        assert bytes(hashes[entry["seq"]]).hex() == entry["entry_hash"]
    log = restored.audit_log()
    assert any(r.action == "vault:restore" for r in log.query(action="vault:restore", limit=5))
    after = log.checkpoint() or log.latest_checkpoint()
    assert after is not None and after.size > before.size
    proof = log.consistency_proof(before.size, after.size)
    verify_consistency(before.size, after.size, before.root, after.root, proof)
    restored.engine.dispose()


@pytest.mark.slow
def test_a_restore_that_stops_half_way_leaves_a_vault_that_does_not_start(
    cli_env: dict[str, str], fresh_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "var"
    _ok("init", "--demo", data=data, env=cli_env)
    _ok("seed", "--customers", "3", data=data, env=cli_env)
    out = tmp_path / "b"
    _ok("backup", "--out", str(out), data=data, env=cli_env)
    _ok("keys", "rotate", data=data, env=cli_env)
    # The manifest's list of key versions is a convenience, not a guarantee: edited away,
    # the restore goes ahead, then finds the restored archives' keys retired and stops.
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["kek_versions"] = {}
    (out / "manifest.json").write_text(json.dumps(manifest))
    target = {**cli_env, "VAULT_DATABASE_URL": fresh_url}
    unsealed = _cli("restore", str(out), data=data, env=target)
    assert unsealed.returncode == 1 and "seal" in unsealed.stderr
    assert _target_is_untouched(fresh_url)
    # Re-sealed with the vault's own keys (only the key holder can), it goes ahead.
    vault = open_vault(_settings(data, cli_env))
    manifest["mac"] = manifest_mac(vault.keys, manifest)
    vault.engine.dispose()
    (out / "manifest.json").write_text(json.dumps(manifest))
    stopped = _cli("restore", str(out), data=data, env=target)
    assert stopped.returncode == 1
    assert "retired in the key file" in stopped.stderr and "stays marked" in stopped.stderr
    with pytest.raises(RestoreIncomplete, match="restore that did not finish"):
        open_vault(_settings(data, target))
    refused = _cli("keys", "status", data=data, env=target)
    assert refused.returncode == 1 and "restore that did not finish" in refused.stderr
    assert not _target_is_untouched(fresh_url)


def test_a_backup_is_refused_where_something_exists(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "var"
    _ok("init", data=data, env=cli_env)
    out = tmp_path / "exists"
    out.mkdir()
    refused = _cli("backup", "--out", str(out), data=data, env=cli_env)
    assert refused.returncode == 1 and "never overwrites" in refused.stderr
    assert list(out.iterdir()) == []


def test_a_restore_into_a_vault_needs_force(cli_env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "var"
    _ok("init", data=data, env=cli_env)
    out = tmp_path / "b"
    _ok("backup", "--out", str(out), data=data, env=cli_env)
    refused = _cli("restore", str(out), data=data, env=cli_env)
    assert refused.returncode == 1 and "not empty" in refused.stderr and "--force" in refused.stderr
    # A damaged backup is refused by its manifest's digests.
    db = next(p for p in out.iterdir() if p.name.startswith("database."))
    raw = bytearray(db.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    db.write_bytes(bytes(raw))
    damaged = _cli("restore", str(out), "--force", data=data, env=cli_env)
    assert damaged.returncode == 1 and "does not match the manifest" in damaged.stderr


def test_backup_writes_an_audit_entry(cli_env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "var"
    _ok("init", data=data, env=cli_env)
    _ok("backup", "--out", str(tmp_path / "b"), data=data, env=cli_env)
    log = open_vault(_settings(data, cli_env)).audit_log()
    [entry] = log.query(action="vault:backup", limit=5)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert entry.detail["audit_size"] == manifest["audit"]["size"]
    assert base64.b64decode(manifest["audit"]["root"])
    assert "keyring" not in json.dumps(entry.detail)


def test_a_restore_onto_a_new_machine_makes_its_data_directory(tmp_path: Path) -> None:
    """A new machine has the backup and the key file, and no data directory yet."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
    data = tmp_path / "var"
    _ok("init", data=data, env=env)
    out = tmp_path / "b"
    _ok("backup", "--out", str(out), data=data, env=env)
    elsewhere = tmp_path / "new-machine" / "var"
    moved = {**env, "VAULT_KEY_FILE": str(data / "keys" / "keyring.json")}
    _ok("restore", str(out), data=elsewhere, env=moved)
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o700
    assert "OK" in _ok("audit", "verify", data=elsewhere, env=moved)


def test_a_backup_altered_without_the_keys_is_refused(
    cli_env: dict[str, str], fresh_url: str, tmp_path: Path
) -> None:
    """Digests catch damage; the manifest's seal catches forgery: an administrator row
    added to the copied database, with the digests recomputed, is not restored."""
    data = tmp_path / "var"
    _ok("init", data=data, env=cli_env)
    out = tmp_path / "b"
    _ok("backup", "--out", str(out), data=data, env=cli_env)
    manifest = json.loads((out / "manifest.json").read_text())
    db = out / manifest["database"]["file"]
    db.write_bytes(db.read_bytes() + b"-- forged\n")
    manifest["database"]["sha256"] = hashlib.sha256(db.read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))
    target = {**cli_env, "VAULT_DATABASE_URL": fresh_url}
    refused = _cli("restore", str(out), data=data, env=target)
    assert refused.returncode == 1 and "seal" in refused.stderr
    assert _target_is_untouched(fresh_url)


def test_restoring_over_a_vault_with_administrators_needs_one_of_them(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """An older backup brings back disabled users and revoked grants: not for a bare
    operating-system account on a vault that has administrators."""
    data = tmp_path / "var"
    _ok("init", data=data, env=cli_env)
    out = tmp_path / "b"
    _ok("backup", "--out", str(out), data=data, env=cli_env)
    add = subprocess.run(
        [sys.executable, "-m", "cli.main", "user", "add", "wang.admin", "--role", "admin",
         "--password-stdin", "--data-dir", str(data)],
        input="admin-pass-2026x", capture_output=True, text=True, env=cli_env, timeout=120,
    )  # fmt: skip
    assert add.returncode == 0, add.stderr
    refused = _cli("restore", str(out), "--force", data=data, env=cli_env)
    assert refused.returncode == 1 and "--as NAME" in refused.stderr
    operator = {**cli_env, "VAULT_OPERATOR_PASSWORD": "admin-pass-2026x"}
    _add_user(data, operator, "li.sup", "info_supervisor", "other-pass-2026y")
    bundle = tmp_path / "newest.json"
    _ok("--as", "wang.admin", "audit", "export", "--out", str(bundle), data=data, env=operator)
    _ok("--as", "wang.admin", "restore", str(out), "--force", "--bundle", str(bundle),
        "--confirm-by", "li.sup", data=data,
        env={**operator, "VAULT_CONFIRMER_PASSWORD": "other-pass-2026y"})  # fmt: skip


def _vault_with_admin(tmp_path: Path, env: dict[str, str]) -> Path:
    """A new vault whose first administrator, wang.admin, was added at bootstrap."""
    data = tmp_path / "var"
    _ok("init", data=data, env=env)
    add = subprocess.run(
        [sys.executable, "-m", "cli.main", "user", "add", "wang.admin", "--role", "admin",
         "--password-stdin", "--data-dir", str(data)],
        input="admin-pass-2026x", capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert add.returncode == 0, add.stderr
    return data


def _add_user(data: Path, operator: dict[str, str], name: str, role: str, password: str) -> None:
    """A user added by the administrator wang.admin (its password in ``operator``)."""
    add = subprocess.run(
        [sys.executable, "-m", "cli.main", "--as", "wang.admin", "user", "add", name,
         "--role", role, "--department", "销售一部", "--password-stdin",
         "--data-dir", str(data)],
        input=password, capture_output=True, text=True, env=operator, timeout=120,
    )  # fmt: skip
    assert add.returncode == 0, add.stderr


def test_one_administrator_alone_never_restores_over_a_live_vault(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Back up, disable a salesperson, export the log, restore the backup over the live
    vault: the disabled account would be back. One administrator alone is refused in
    every way (no second, himself as second, a non-administrator, a wrong password) and
    nothing changes; a second administrator confirming is named in the restore's entry,
    and no token or session issued before the restore opens afterwards."""
    data = _vault_with_admin(tmp_path, cli_env)
    operator = {**cli_env, "VAULT_OPERATOR_PASSWORD": "admin-pass-2026x"}
    _add_user(data, operator, "s.one", "salesperson", "sales-pass-2026x")
    _add_user(data, operator, "s.two", "salesperson", "sales-pass-2026z")
    _add_user(data, operator, "li.sup", "info_supervisor", "other-pass-2026y")
    out = tmp_path / "b"
    _ok("--as", "wang.admin", "backup", "--out", str(out), data=data, env=operator)
    _ok("--as", "wang.admin", "user", "disable", "s.one", data=data, env=operator)
    bundle = tmp_path / "newest.json"
    _ok("--as", "wang.admin", "audit", "export", "--out", str(bundle), data=data, env=operator)
    settings = _settings(data, cli_env)
    vault = open_vault(settings)
    tokens = TokenService(
        secret=vault.keys.secret("token_signing"),
        issuer=f"archive-vault:{vault.keys.vault_id}",
        ttl=timedelta(minutes=15),
    )
    with Session(vault.engine) as session:
        gen = session.exec(select(User).where(User.username == "s.two")).one().token_generation
    token, _ = tokens.issue("s.two", generation=gen)
    log = vault.audit_log()
    size = log.head()
    vault.engine.dispose()
    restore = ("--as", "wang.admin", "restore", str(out), "--force", "--bundle", str(bundle))
    confirmer = {**operator, "VAULT_CONFIRMER_PASSWORD": "other-pass-2026y"}
    for extra, env, words in (
        ((), operator, "--confirm-by NAME"),
        (("--confirm-by", "wang.admin"), operator, "the information supervisor, another person"),
        (("--confirm-by", "s.two"), {**operator, "VAULT_CONFIRMER_PASSWORD": "sales-pass-2026z"},
         "only an enabled information supervisor confirms"),
        (("--confirm-by", "li.sup"), {**operator, "VAULT_CONFIRMER_PASSWORD": "wrong-2026"},
         "wrong user name or password"),
    ):  # fmt: skip
        refused = _cli(*restore, *extra, data=data, env=env)
        assert refused.returncode == 1 and words in refused.stderr, refused.stderr
        assert "password" not in refused.stdout
        with Session(open_vault(settings).engine) as session:
            one = session.exec(select(User).where(User.username == "s.one")).one()
            assert one.disabled  # nothing was restored
    assert log.head() > size  # the refusals are on record (sign-ins, denials)
    _ok(*restore, "--confirm-by", "li.sup", data=data, env=confirmer)
    restored = open_vault(settings)
    [entry] = restored.audit_log().query(action="vault:restore", limit=5)
    assert entry.actor == "wang.admin" and entry.detail["confirmed_by"] == "li.sup"
    with Session(restored.engine) as session:
        two = session.exec(select(User).where(User.username == "s.two")).one()
        assert two.token_generation > gen  # the token issued before the restore is void
    assert tokens.verify(token).generation != two.token_generation


def test_a_restore_over_a_vault_never_erases_what_its_log_signed(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """One administrator backs up, disables a user, and restores the backup over the live
    vault: the disable and its entries would be gone, with no one else involved. The
    replaced vault's own signed log must be carried forward (a bundle that extends it)."""
    data = tmp_path / "var"
    _ok("init", data=data, env=cli_env)
    for name, role, pw in (("s.one", "salesperson", "sales-pass-2026x"),
                           ("wang.admin", "admin", "admin-pass-2026x")):  # fmt: skip
        add = subprocess.run(
            [sys.executable, "-m", "cli.main", "user", "add", name, "--role", role,
             "--department", "销售一部", "--password-stdin", "--data-dir", str(data)],
            input=pw, capture_output=True, text=True, env=cli_env, timeout=120,
        )  # fmt: skip
        assert add.returncode == 0, add.stderr
    operator = {**cli_env, "VAULT_OPERATOR_PASSWORD": "admin-pass-2026x"}
    _add_user(data, operator, "li.sup", "info_supervisor", "other-pass-2026y")
    operator["VAULT_CONFIRMER_PASSWORD"] = "other-pass-2026y"
    out = tmp_path / "b"
    _ok("--as", "wang.admin", "backup", "--out", str(out), data=data, env=operator)
    _ok("--as", "wang.admin", "user", "disable", "s.one", data=data, env=operator)
    log = open_vault(_settings(data, cli_env)).audit_log()
    changes = len(log.query(action="user:change", limit=50))
    refused = _cli("--as", "wang.admin", "restore", str(out), "--force",
                   "--confirm-by", "li.sup", data=data, env=operator)  # fmt: skip
    assert refused.returncode == 1 and "erase them" in refused.stderr, refused.stderr
    assert len(log.query(action="user:change", limit=50)) == changes  # nothing was changed
    # With the replaced vault's log exported and given, its entries stay on record.
    bundle = tmp_path / "newest.json"
    _ok("--as", "wang.admin", "audit", "export", "--out", str(bundle), data=data, env=operator)
    _ok("--as", "wang.admin", "restore", str(out), "--force", "--bundle", str(bundle),
        "--confirm-by", "li.sup", data=data, env=operator)  # fmt: skip
    assert len(log.query(action="user:change", limit=50)) == changes


def test_an_edited_export_record_is_refused_not_ignored(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """The record of the newest exported log is what stops a restore of an older one;
    an edited record must stop the restore, and the next export replaces it."""
    data = tmp_path / "var"
    _ok("init", data=data, env=cli_env)
    out = tmp_path / "b"
    _ok("backup", "--out", str(out), data=data, env=cli_env)
    record = data / "audit-last-export.json"
    record.write_text(json.dumps({"path": "x", "size": 10**9, "note": "junk"}))
    refused = _cli("restore", str(out), "--force", data=data, env=cli_env)
    assert refused.returncode == 1 and "not a record this vault's log signed" in refused.stderr
    bundle = tmp_path / "newest.json"
    _ok("audit", "export", "--out", str(bundle), data=data, env=cli_env)
    assert json.loads(record.read_text())["path"] == str(bundle.resolve())
