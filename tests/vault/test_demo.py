"""``demo`` and ``seed`` write only to a vault created as a demo vault.

The marker is an HMAC of the vault id under a key from the key file, so a row
inserted or copied with database access alone does not make a vault a demo
vault. The command-line tests run ``demo`` against a vault made by ``init``,
on SQLite and on PostgreSQL, and check that it is refused and adds no user.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlmodel import Session, select

from foundation.db import make_engine, transaction
from foundation.settings import Settings
from vault.demo import META_KEY, is_demo, mark_demo
from vault.models import User, VaultMeta
from vault.vault import Vault, init_vault


def test_a_new_vault_is_not_a_demo_vault_until_marked(vault: Vault) -> None:
    assert not is_demo(vault.engine, vault.keys)
    with transaction(vault.engine) as session:
        mark_demo(session, vault.keys)
    assert is_demo(vault.engine, vault.keys)


def test_a_forged_or_copied_marker_is_not_accepted(vault: Vault, tmp_path: Path) -> None:
    # With database access alone: a row with a made-up value …
    with transaction(vault.engine) as session:
        session.add(VaultMeta(key=META_KEY, value="00" * 32))
    assert not is_demo(vault.engine, vault.keys)
    # … or the valid marker of another (real) demo vault, copied over.
    other = init_vault(Settings(data_dir=tmp_path / "other"))
    with transaction(other.engine) as session:
        mark_demo(session, other.keys)
    assert is_demo(other.engine, other.keys)
    with Session(other.engine) as s:
        copied = s.exec(select(VaultMeta.value).where(VaultMeta.key == META_KEY)).one()
    with transaction(vault.engine) as session:
        row = session.get(VaultMeta, META_KEY)
        row.value = copied
        session.add(row)
    assert not is_demo(vault.engine, vault.keys)


def _cli(env: dict[str, str], data: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _users(env: dict[str, str], data: Path) -> list[str]:
    engine = make_engine(env.get("VAULT_DATABASE_URL") or f"sqlite:///{data / 'vault.db'}")
    try:
        with Session(engine) as s:
            return list(s.exec(select(User.username)))
    finally:
        engine.dispose()


def test_demo_and_seed_refuse_a_vault_made_by_init(cli_env, tmp_path: Path) -> None:
    data = tmp_path / "var"
    assert _cli(cli_env, data, "init").returncode == 0
    refused = _cli(cli_env, data, "demo", "--no-serve", "--customers", "1")
    assert refused.returncode == 1
    message = " ".join(refused.stderr.split())
    assert message.startswith("error: not a demo vault: `archive-vault demo` adds accounts")
    assert "--data-dir" in message and "demo-vault-2026" not in refused.stdout
    assert _users(cli_env, data) == []
    seeded = _cli(cli_env, data, "seed", "--customers", "1")
    assert seeded.returncode == 1 and "not a demo vault" in seeded.stderr


def test_demo_runs_again_on_its_own_vault(cli_env, tmp_path: Path) -> None:
    data = tmp_path / "demo"
    first = _cli(cli_env, data, "demo", "--no-serve", "--customers", "3")
    assert first.returncode == 0, first.stderr
    assert "Initialised demo vault" in first.stdout and "Seeded 3" in first.stdout
    again = _cli(cli_env, data, "demo", "--no-serve", "--customers", "3")
    assert again.returncode == 0, again.stderr
    assert "not seeding again" in again.stdout and "Demo logins" in again.stdout
    assert "admin" in _users(cli_env, data)
    assert _cli(cli_env, data, "seed", "--customers", "2").returncode == 0
