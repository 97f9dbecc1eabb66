"""``init`` is all or nothing, and a database that cannot be reached is called that.

A failed ``init`` leaves no key file, no SQLite file it created and none of the tables it
created (on SQLite and PostgreSQL), so that running it again after the cause is fixed
succeeds instead of being refused because a key file "already exists". Commands on an
existing vault whose database is unreachable (a wrong port) say so and name the
database; they never send the operator to ``init``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from cli import archives as cli_archives
from cli.main import main
from foundation.db import make_engine
from foundation.settings import Settings
from vault import migrate
from vault.vault import creating_vault, init_vault, open_vault

# Nothing listens on port 1: the connection is refused at once.
UNREACHABLE = "postgresql+psycopg://vault:s3cret-pw@127.0.0.1:1/vault"
# A table a late migration creates: if it is already there, that migration fails.
CONFLICT = "decoy_archive"


def _cli(env: dict[str, str], data: Path, *args: str, stdin: str | None = None):
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=300,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _url(env: dict[str, str], data: Path) -> str:
    return env.get("VAULT_DATABASE_URL") or f"sqlite:///{data / 'vault.db'}"


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def test_init_against_an_unreachable_database_leaves_nothing_and_a_retry_succeeds(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "var"
    refused = _cli({**cli_env, "VAULT_DATABASE_URL": UNREACHABLE}, data, "init")
    assert refused.returncode == 1
    message = _one_line(refused.stderr)
    assert "cannot reach the database postgresql+psycopg://vault:***@127.0.0.1:1/vault" in message
    assert "s3cret-pw" not in refused.stderr + refused.stdout
    assert not data.exists()  # no directory, no key file
    assert _cli(cli_env, data, "init").returncode == 0
    assert (data / "keys" / "keyring.json").exists()


def test_a_failing_migration_leaves_no_key_file_and_no_tables_and_a_retry_succeeds(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "var"
    url = _url(cli_env, data)
    data.mkdir()
    engine = make_engine(url)
    with engine.begin() as conn:  # someone else's table, in the vault's way
        conn.exec_driver_sql(f"CREATE TABLE {CONFLICT} (x INTEGER)")
    engine.dispose()
    failed = _cli(cli_env, data, "init")
    assert failed.returncode == 1, failed.stdout
    assert "nothing was changed" in _one_line(failed.stderr)
    assert not (data / "keys").exists()
    assert _tables(url) == {CONFLICT}  # the tables init made are gone, the other one stays
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {CONFLICT}")
    engine.dispose()
    assert _cli(cli_env, data, "init").returncode == 0
    added = _cli(
        cli_env,
        data,
        *("user", "add", "li.na", "--role", "salesperson", "--password-stdin"),
        stdin="a long enough password\n",
    )
    assert added.returncode == 0, added.stderr


def test_a_migration_failing_half_way_is_undone(
    settings: Settings, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The migrations up to 0010 are committed, then one fails: init takes it all back."""
    real = migrate.upgrade

    def half_then_fail(eng: sa.Engine, revision: str = "head") -> None:
        real(eng, "0010")
        raise RuntimeError("migration 0011 failed")

    monkeypatch.setattr(migrate, "upgrade", half_then_fail)
    with pytest.raises(RuntimeError):
        init_vault(settings, engine=engine)
    assert not settings.resolved_key_file.exists()
    assert not settings.data_dir.exists()
    if engine.dialect.name == "sqlite":
        assert not Path(engine.url.database or "").exists()  # the file init created
    else:
        assert sa.inspect(engine).get_table_names() == []
    monkeypatch.setattr(migrate, "upgrade", real)
    vault = init_vault(settings, engine=engine)
    open_vault(settings, engine=engine)  # the retry made a whole vault
    assert vault.keys.vault_id


def test_a_failure_after_the_tables_is_undone_too(settings: Settings, engine: sa.Engine) -> None:
    """The block run inside the creation (the CLI's audit entry) fails: nothing stays,
    though the audit tables, their guards and the vault's identity were all written."""
    with pytest.raises(KeyboardInterrupt), creating_vault(settings, engine=engine) as vault:
        assert open_vault(settings, engine=engine).keys.vault_id == vault.keys.vault_id
        raise KeyboardInterrupt
    assert not settings.resolved_key_file.exists()
    assert not settings.data_dir.exists()
    if engine.dialect.name == "sqlite":
        assert not Path(engine.url.database or "").exists()
    else:
        assert sa.inspect(engine).get_table_names() == []
        with engine.connect() as conn:
            functions = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_proc WHERE pronamespace = current_schema()::regnamespace"
            ).scalar_one()
        assert functions == 0
    init_vault(settings, engine=engine)


def test_the_cli_init_undoes_itself_when_its_audit_steps_fail(
    cli_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "var"
    for key in [k for k in os.environ if k.startswith("VAULT_")]:
        monkeypatch.delenv(key)
    if "VAULT_DATABASE_URL" in cli_env:
        monkeypatch.setenv("VAULT_DATABASE_URL", cli_env["VAULT_DATABASE_URL"])

    def broken(_store: object) -> None:
        raise ValueError("the policy files could not be recorded")

    monkeypatch.setattr(cli_archives, "record_policy", broken)
    monkeypatch.setattr(sys, "argv", ["archive-vault", "init", "--data-dir", str(data)])
    umask = os.umask(0o077)  # main() sets it: give this process its own back afterwards
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        os.umask(umask)
    assert exited.value.code == 70
    assert "internal error: ValueError" in capsys.readouterr().err
    assert not data.exists()  # the SQLite file, the key file and their directories
    if "VAULT_DATABASE_URL" in cli_env:
        assert _tables(cli_env["VAULT_DATABASE_URL"]) == set()
    assert _cli(cli_env, data, "init").returncode == 0


@pytest.mark.parametrize(
    "args",
    [
        ("audit", "verify"),
        ("user", "add", "li.na", "--role", "salesperson", "--password-stdin"),
        ("serve", "--port", "1"),
        ("upgrade",),
        ("keys", "status"),
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_commands_on_a_vault_name_an_unreachable_database(args: tuple[str, ...], tmp_path) -> None:
    """A wrong port in VAULT_DATABASE_URL is reported as the database being unreachable,
    with the URL's password hidden, and not as "no vault … run init first"."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
    env["VAULT_DATABASE_URL"] = UNREACHABLE
    proc = _cli(env, tmp_path / "var", *args, stdin="a long enough password\n")
    assert proc.returncode != 0
    message = _one_line(proc.stderr)
    assert "cannot reach the database postgresql+psycopg://vault:***@127.0.0.1:1/vault" in message
    assert "Connection refused" in message and "VAULT_DATABASE_URL" in message
    assert "run `archive-vault init`" not in message and "s3cret-pw" not in proc.stderr


def test_opening_a_missing_sqlite_vault_creates_no_file(tmp_path: Path) -> None:
    data = tmp_path / "var"
    data.mkdir()
    proc = _cli({k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}, data, "sweep")
    assert proc.returncode == 1 and "run `archive-vault init` first" in _one_line(proc.stderr)
    assert list(data.iterdir()) == []
