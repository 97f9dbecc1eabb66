"""Commands run as a named vault administrator (``--as NAME``), checked like a sign-in.

Once a vault has an enabled administrator, a command that changes it refuses
to run as the bare operating-system account; the entries of one that runs
name the administrator and the operating-system account both.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from audit.models import entry_table
from vault.models import User, table_of

ADMIN_PW = "admin-pass-2026x"
SALES_PW = "sales-pass-2026x"


def run(
    *args: str, data: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        input=stdin,
        timeout=120,
        start_new_session=True,  # no terminal: a missing password is an error, not a prompt
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr
    return proc


def engine(data: Path) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{data / 'vault.db'}")


def entries(data: Path) -> list[tuple[str, str | None, str]]:
    with engine(data).connect() as conn:
        rows = conn.execute(
            sa.select(entry_table.c.actor, entry_table.c.client, entry_table.c.action).order_by(
                entry_table.c.seq
            )
        ).all()
    return [(r.actor, r.client, r.action) for r in rows]


def usernames(data: Path) -> set[str]:
    with engine(data).connect() as conn:
        return set(conn.execute(sa.select(table_of(User).c.username)).scalars())


def password_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / f"pw-{mode:o}"
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A vault with one administrator, added at bootstrap as the operating-system account."""
    path = tmp_path / "var"
    ok(run("init", data=path))
    ok(
        run(
            "user",
            "add",
            "wang.admin",
            "--role",
            "admin",
            "--password-stdin",
            data=path,
            stdin=ADMIN_PW,
        )
    )
    return path


def test_before_any_administrator_commands_run_as_the_os_account(data: Path) -> None:
    me = f"cli:{getpass.getuser()}"
    assert (me, "cli", "user:change") in entries(data)


def test_a_change_without_as_is_refused_once_the_vault_has_an_administrator(data: Path) -> None:
    before = entries(data)
    proc = run(
        "user",
        "add",
        "li.na",
        "--role",
        "salesperson",
        "--password-stdin",
        data=data,
        stdin=SALES_PW,
    )
    assert proc.returncode == 1
    assert "--as NAME" in proc.stderr and len(proc.stderr.strip().splitlines()) <= 3
    assert "li.na" not in usernames(data)
    assert entries(data) == before  # nothing written, not even a policy entry


def test_the_named_administrator_and_the_os_account_are_both_on_record(
    data: Path, tmp_path: Path
) -> None:
    pw = password_file(tmp_path, ADMIN_PW)
    # --as after the command, as people type it
    ok(
        run(
            "user",
            "add",
            "li.na",
            "--role",
            "salesperson",
            "--password-stdin",
            "--as",
            "wang.admin",
            data=data,
            stdin=SALES_PW,
            env={"VAULT_OPERATOR_PASSWORD_FILE": str(pw)},
        )
    )
    assert "li.na" in usernames(data)
    os_account = f"cli:{getpass.getuser()}"
    log = entries(data)
    assert ("wang.admin", os_account, "auth:login") in log
    assert ("wang.admin", os_account, "user:change") in log
    # VAULT_OPERATOR names the operator too
    ok(
        run(
            "user",
            "disable",
            "li.na",
            data=data,
            env={"VAULT_OPERATOR": "wang.admin", "VAULT_OPERATOR_PASSWORD": ADMIN_PW},
        )
    )
    assert ("wang.admin", os_account, "user:change") in entries(data)


def test_a_wrong_password_is_a_failed_sign_in_and_changes_nothing(data: Path) -> None:
    before = len(entries(data))
    proc = run(
        "user",
        "add",
        "li.na",
        "--role",
        "salesperson",
        "--password-stdin",
        "--as",
        "wang.admin",
        data=data,
        stdin=SALES_PW,
        env={"VAULT_OPERATOR_PASSWORD": "not-the-password"},
    )
    assert proc.returncode == 1 and "wrong user name or password" in proc.stderr
    assert "not-the-password" not in proc.stderr + proc.stdout
    assert "li.na" not in usernames(data)
    assert [a for _, _, a in entries(data)[before:]] == ["auth:login-failed"]


def test_only_an_enabled_administrator_may_operate(data: Path, tmp_path: Path) -> None:
    """A salesperson who knows her own password cannot use the command line to widen access."""
    admin = {"VAULT_OPERATOR_PASSWORD": ADMIN_PW}
    ok(
        run(
            "--as",
            "wang.admin",
            "user",
            "add",
            "li.na",
            "--role",
            "salesperson",
            "--password-stdin",
            data=data,
            stdin=SALES_PW,
            env=admin,
        )
    )
    proc = run(
        "--as",
        "li.na",
        "user",
        "add",
        "zhao.lei",
        "--role",
        "admin",
        "--password-stdin",
        data=data,
        stdin=SALES_PW,
        env={"VAULT_OPERATOR_PASSWORD": SALES_PW},
    )
    assert proc.returncode == 1 and "only an enabled administrator" in proc.stderr
    assert "zhao.lei" not in usernames(data)
    ok(
        run(
            "--as",
            "wang.admin",
            "user",
            "add",
            "chen.admin",
            "--role",
            "admin",
            "--password-stdin",
            data=data,
            stdin=ADMIN_PW,
            env=admin,
        )
    )
    ok(run("--as", "chen.admin", "user", "disable", "wang.admin", data=data, env=admin))
    proc = run("--as", "wang.admin", "user", "disable", "li.na", data=data, env=admin)
    assert proc.returncode == 1  # disabled: refused as a failed sign-in


def test_a_password_file_others_can_read_is_refused(data: Path, tmp_path: Path) -> None:
    pw = password_file(tmp_path, ADMIN_PW, mode=0o644)
    proc = run(
        "--as",
        "wang.admin",
        "user",
        "disable",
        "wang.admin",
        data=data,
        env={"VAULT_OPERATOR_PASSWORD_FILE": str(pw)},
    )
    assert proc.returncode == 1 and "chmod 600" in proc.stderr


def test_no_password_and_no_terminal_is_a_clear_error(data: Path) -> None:
    proc = run("--as", "wang.admin", "user", "disable", "wang.admin", data=data)
    assert proc.returncode == 1 and "VAULT_OPERATOR_PASSWORD_FILE" in proc.stderr


def test_reading_commands_need_no_operator(data: Path) -> None:
    ok(run("keys", "status", data=data))
    ok(run("custodians", data=data))


def test_demoting_every_administrator_does_not_switch_names_off(data: Path) -> None:
    """The last administrator disables himself: commands still need a name, and the one
    way back is a new administrator, added as the operating-system account."""
    admin = {"VAULT_OPERATOR_PASSWORD": ADMIN_PW}
    ok(run("--as", "wang.admin", "user", "disable", "wang.admin", data=data, env=admin))
    proc = run(
        "user",
        "add",
        "li.na",
        "--role",
        "salesperson",
        "--password-stdin",
        data=data,
        stdin=SALES_PW,
    )
    assert proc.returncode == 1 and "--as NAME" in proc.stderr
    assert "li.na" not in usernames(data)
    ok(
        run(
            "user",
            "add",
            "zhou.admin",
            "--role",
            "admin",
            "--password-stdin",
            data=data,
            stdin=ADMIN_PW,
        )
    )
    ok(
        run(
            "--as",
            "zhou.admin",
            "user",
            "add",
            "li.na",
            "--role",
            "salesperson",
            "--password-stdin",
            data=data,
            stdin=SALES_PW,
            env=admin,
        )
    )


def test_as_is_moved_before_the_command_only_with_a_name() -> None:
    from cli.main import _hoist_operator

    assert _hoist_operator(["user", "add", "x", "--as", "wang.admin"]) == [
        "--as", "wang.admin", "user", "add", "x"
    ]  # fmt: skip
    assert _hoist_operator(["user", "add", "x", "--as=wang.admin"])[0] == "--as=wang.admin"
    # `--as` followed by an option is no name: left where it is, for the parser to refuse
    assert _hoist_operator(["restore", "B", "--as", "--force"]) == [
        "restore", "B", "--as", "--force"
    ]  # fmt: skip


def test_database_tools_never_see_the_vaults_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlalchemy as sa

    from foundation.dbcopy import _libpq

    monkeypatch.setenv("VAULT_OPERATOR_PASSWORD", "admin-pass-2026x")
    monkeypatch.setenv("VAULT_PKCS11_PIN", "123456")
    _, env = _libpq(sa.make_url("postgresql+psycopg://u:pw@127.0.0.1/db"))
    assert env["PGPASSWORD"] == "pw" and "PATH" in env
    assert not any(k.startswith("VAULT_") for k in env)


def test_sealing_manifests_is_an_administrators_act(data: Path) -> None:
    proc = run("seal-manifests", data=data)
    assert proc.returncode == 1 and "--as NAME" in proc.stderr
    ok(run("--as", "wang.admin", "seal-manifests", data=data,
           env={"VAULT_OPERATOR_PASSWORD": ADMIN_PW}))  # fmt: skip
