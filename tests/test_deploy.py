"""The shipped systemd unit: systemd accepts every line, and the command it starts exists.

``systemd-analyze verify`` exits 0 even for an unknown key or a value it cannot
parse (it prints a warning and ignores the line), so any output is a failure
here: a misspelt hardening option would otherwise silently not apply.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from foundation.settings import Settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
UNIT = DEPLOY / "archive-vault.service"
SHIPPED_BINARY = "/opt/archive-vault/bin/archive-vault"


def installed_binary() -> str:
    found = Path(sys.executable).with_name("archive-vault")
    assert found.exists(), "archive-vault is not installed next to this Python"
    return str(found)


def unit_lines() -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, value = line.split("=", 1)
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


@pytest.fixture
def analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if os.environ.get("VAULT_REQUIRE_SYSTEMD") == "1":
            pytest.fail("systemd-analyze is missing (Debian package systemd)")
        pytest.skip("systemd-analyze is not installed")
    return tool


def test_systemd_accepts_every_line_of_the_unit(analyze: str, tmp_path: Path) -> None:
    env = tmp_path / "archive-vault.env"
    env.write_text((DEPLOY / "archive-vault.env.example").read_text())
    text = UNIT.read_text().replace(SHIPPED_BINARY, installed_binary())
    text = text.replace("/etc/archive-vault/archive-vault.env", str(env))
    unit = tmp_path / "archive-vault.service"
    unit.write_text(text)
    proc = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout + proc.stderr == "", proc.stdout + proc.stderr


def test_a_misspelt_option_is_caught(analyze: str, tmp_path: Path) -> None:
    """The check above can fail: a typo in a hardening line is reported."""
    text = UNIT.read_text().replace(SHIPPED_BINARY, installed_binary())
    text = text.replace("EnvironmentFile=", "#").replace("NoNewPrivileges=", "NoNewPrivilege=")
    unit = tmp_path / "archive-vault.service"
    unit.write_text(text)
    proc = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert "NoNewPrivilege" in proc.stdout + proc.stderr


def test_the_unit_starts_serve_with_options_it_has() -> None:
    (start,) = unit_lines()["ExecStart"]
    argv = shlex.split(start)
    assert argv[0] == SHIPPED_BINARY and argv[1] == "serve"
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", *argv[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--forwarded-allow-ips" in argv and "*" not in argv


def test_the_unit_keeps_content_off_disk_and_privileges_down() -> None:
    keys = unit_lines()
    for key, value in {
        "LimitCORE": "0",  # a core dump of a worker holds decrypted content
        "UMask": "0077",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "KillMode": "mixed",
    }.items():
        assert keys.get(key) == [value], key


def test_the_example_environment_names_only_real_settings() -> None:
    fields = set(Settings.model_fields)
    for line in (DEPLOY / "archive-vault.env.example").read_text().splitlines():
        if line.startswith("VAULT_"):
            name = line.split("=", 1)[0].removeprefix("VAULT_").lower()
            assert name in fields, line
