"""A restore over a live vault needs the information supervisor (``--confirm-by``): one
administrator alone must not be able to supply that second person, neither as an
administrator he made himself nor as a supervisor he files for."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from api.security import TokenService
from foundation.db import make_engine
from policies.directory import load_principal, revoke_tokens
from policies.errors import UserDisabled
from tests.vault.test_backup_restore import (
    _add_user,
    _cli,
    _ok,
    _settings,
    _vault_with_admin,
)
from vault.backup import read_manifest
from vault.models import User
from vault.restore import restore_database
from vault.vault import open_vault


def _still_disabled(data: Path, env: dict[str, str]) -> bool:
    with Session(open_vault(_settings(data, env)).engine) as session:
        return session.exec(select(User).where(User.username == "s.one")).one().disabled


def test_an_administrator_made_by_the_operator_never_confirms_their_restore(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """wang.admin backs up, disables s.one, then adds sock.admin with a password of his
    own choosing, tries accounts of his own that are not administrators' (whose passwords
    he may no longer choose), and names each as the one who confirms: one person, several
    names. Only an information supervisor confirms, and no administrator makes one
    alone."""
    data = _vault_with_admin(tmp_path, cli_env)
    operator = {**cli_env, "VAULT_OPERATOR_PASSWORD": "admin-pass-2026x"}
    _add_user(data, operator, "s.one", "salesperson", "sales-pass-2026x")
    _add_user(data, operator, "li.sup", "info_supervisor", "other-pass-2026y")
    out = tmp_path / "b"
    _ok("--as", "wang.admin", "backup", "--out", str(out), data=data, env=operator)
    _ok("--as", "wang.admin", "user", "disable", "s.one", data=data, env=operator)
    # Alone: a new administrator whose password he chose; and accounts of his that are
    # not administrators' (one to make administrator later, a supervisor filed for li.sup
    # to sign), whose passwords he may not choose at all.
    _add_user(data, operator, "sock.admin", "admin", "sock-pass-2026q")
    for name, role in (("sock.two", "salesperson"), ("sock.sup", "info_supervisor")):
        chosen = subprocess.run(
            [sys.executable, "-m", "cli.main", "--as", "wang.admin", "user", "add", name,
             "--role", role, "--department", "销售一部", "--password-stdin",
             "--data-dir", str(data)],
            input="sock-pass-2026r", capture_output=True, text=True, env=operator, timeout=120,
        )  # fmt: skip
        assert chosen.returncode == 2 and "--password-stdin" in chosen.stderr, chosen.stderr
    bundle = tmp_path / "newest.json"
    _ok("--as", "wang.admin", "audit", "export", "--out", str(bundle), data=data, env=operator)
    restore = ("--as", "wang.admin", "restore", str(out), "--force", "--bundle", str(bundle))
    for sock, password in (
        ("sock.admin", "sock-pass-2026q"),
        ("sock.two", "sock-pass-2026r"),
        ("sock.sup", "sock-pass-2026r"),
    ):
        env = {**operator, "VAULT_CONFIRMER_PASSWORD": password}
        refused = _cli(*restore, "--confirm-by", sock, data=data, env=env)
        assert refused.returncode == 1, refused.stdout
        assert (
            "only an enabled information supervisor confirms" in refused.stderr
            or "wrong user name or password" in refused.stderr
        ), refused.stderr
        assert _still_disabled(data, cli_env)  # nothing was restored


def test_a_restore_run_again_after_a_failure_still_voids_earlier_tokens(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """A restore that stopped after writing the database (an error, or its operator's
    Ctrl-C) is run again over the marked, half-restored database: the replaced vault's
    token generations are gone by then, yet a token it issued must not open."""
    data = _vault_with_admin(tmp_path, cli_env)
    operator = {**cli_env, "VAULT_OPERATOR_PASSWORD": "admin-pass-2026x",
                "VAULT_CONFIRMER_PASSWORD": "other-pass-2026y"}  # fmt: skip
    _add_user(data, operator, "s.two", "salesperson", "sales-pass-2026z")
    _add_user(data, operator, "li.sup", "info_supervisor", "other-pass-2026y")
    out = tmp_path / "b"
    _ok("--as", "wang.admin", "backup", "--out", str(out), data=data, env=operator)
    settings = _settings(data, cli_env)
    vault = open_vault(settings)
    with Session(vault.engine) as session:  # e.g. a password change after the backup
        generation = revoke_tokens(session, "s.two")
        session.commit()
    tokens = TokenService(
        secret=vault.keys.secret("token_signing"),
        issuer=f"archive-vault:{vault.keys.vault_id}",
        ttl=timedelta(minutes=15),
    )
    token, _ = tokens.issue("s.two", generation=generation)
    vault.engine.dispose()
    bundle = tmp_path / "newest.json"
    _ok("--as", "wang.admin", "audit", "export", "--out", str(bundle), data=data, env=operator)
    # The first run got as far as writing the backup's database, marked, and stopped.
    engine = make_engine(settings.resolved_database_url)
    restore_database(engine, read_manifest(out), out, data, force=True,
                     progress=lambda *_: None, app_role=settings.app_role)  # fmt: skip
    engine.dispose()
    _ok("--as", "wang.admin", "restore", str(out), "--force", "--bundle", str(bundle),
        "--confirm-by", "li.sup", data=data, env=operator)  # fmt: skip
    claims = tokens.verify(token)
    restored = open_vault(settings)
    with restored.engine.connect() as conn, pytest.raises(UserDisabled):
        load_principal(
            conn, "s.two", token_issued_at=claims.issued_at, token_generation=claims.generation
        )
