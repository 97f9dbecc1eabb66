"""Policy files and chains are checked at load; the CLI explains decisions and fails
with one line, never a traceback."""

from __future__ import annotations

import json
import tomllib
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.policy import policy_app
from foundation.db import transaction
from foundation.settings import Settings
from policies.chains import CHAINS_FILE, parse_chains
from policies.directory import add_user
from policies.engine import POLICY_FILE, PolicyEngine
from policies.errors import ConfigError
from policies.roles import RequestKind
from vault.models import Archive
from vault.vault import init_vault


def _chains() -> dict:
    return tomllib.loads(CHAINS_FILE.read_text(encoding="utf-8"))


def test_shipped_files_load() -> None:
    engine = PolicyEngine()
    assert set(engine.chains.kinds) == set(RequestKind)
    assert engine.chains.max_loan_hours == 72
    assert engine.chains.pending_expiry_hours == 7 * 24


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["settings"].update(max_loan_hours=96),
        lambda d: d["kinds"].pop("copy"),
        lambda d: d["kinds"]["view"].update(stages=[]),
        lambda d: d["kinds"]["view"]["stages"][0].update(roles=["wizard"]),
        lambda d: d["kinds"]["view"]["stages"][0].update(roles=["admin"]),
        lambda d: d["kinds"]["view"]["stages"][0].update(scope="anywhere"),
        lambda d: d["kinds"]["view"].update(filers=["compliance"]),
        lambda d: d["kinds"]["view"].update(grants=["teleport"]),
        lambda d: d.update(purposes={}),
    ],
)
def test_weakening_chains_is_refused(edit) -> None:
    data = _chains()
    edit(data)
    with pytest.raises(ConfigError):
        parse_chains(data, "test")


@pytest.mark.parametrize(
    "line",
    [
        "p, read, wizard, *, *, allow",
        "p, fly, salesperson, *, *, allow",
        "p, read, salesperson, *, friend, allow",
        "g, bob, A-1/read, 0",
    ],
)
def test_bad_policy_lines_refused(tmp_path: Path, line: str) -> None:
    bad = tmp_path / "policy.csv"
    bad.write_text(POLICY_FILE.read_text(encoding="utf-8") + line + "\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        PolicyEngine(policy_file=bad)


@pytest.fixture
def cli_vault(tmp_path: Path) -> Settings:
    settings = Settings(data_dir=tmp_path / "var", expected_archives=1000)
    vault = init_vault(settings)

    with transaction(vault.engine) as s:
        add_user(s, username="alice", roles=["salesperson"], department="sales")
        add_user(s, username="carol", roles=["salesperson"], department="east")
        s.add(
            Archive(
                archive_no="A-1",
                category="general",
                grade="A",
                classification="internal",
                owner="alice",
                department="sales",
                retention_until=date(2035, 1, 1),
            )
        )
    vault.engine.dispose()
    return settings


def _run(*args: str):
    return CliRunner().invoke(policy_app, list(args))


def test_explain(cli_vault: Settings) -> None:
    d = str(cli_vault.data_dir)
    ok = _run("explain", "--user", "alice", "--action", "read", "--archive", "A-1", "--data-dir", d)
    assert ok.exit_code == 0 and "ALLOWED" in ok.output and "owns archive A-1" in ok.output
    no = _run(
        "explain",
        "--user",
        "carol",
        "--action",
        "read",
        "--archive",
        "A-1",
        "--groups",
        "contact",
        "--json",
        "--data-dir",
        d,
    )
    assert no.exit_code == 1
    body = json.loads(no.output)
    assert body["allowed"] is False and "file a view request" in body["why"]


@pytest.mark.parametrize(
    "args",
    [
        ("--user", "nobody", "--action", "read", "--archive", "A-1"),
        ("--user", "alice", "--action", "fly", "--archive", "A-1"),
        ("--user", "alice", "--action", "read", "--archive", "NOPE"),
    ],
)
def test_explain_errors_are_one_line(cli_vault: Settings, args) -> None:
    out = _run("explain", *args, "--data-dir", str(cli_vault.data_dir))
    assert out.exit_code == 2
    assert "Traceback" not in out.output and "error:" in out.output


def test_explain_without_a_vault(tmp_path: Path) -> None:
    out = _run("explain", "--user", "a", "--action", "read", "--data-dir", str(tmp_path))
    assert out.exit_code == 2 and "Traceback" not in out.output


def test_check_and_chains() -> None:
    assert _run("check").exit_code == 0
    out = _run("chains", "--json")
    rows = json.loads(out.output)
    view = [r for r in rows if r["kind"] == "view"]
    assert [r["signer"] for r in view][:2] == ["your department head", "an information officer"]
