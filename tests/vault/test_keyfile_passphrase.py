"""A key file sealed under a passphrase (scrypt + AES-GCM): useless when copied alone."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from foundation.settings import Settings
from tests.factories import SALES, archive
from vault.errors import KeyFileError
from vault.keys import create_key_file, key_file_is_sealed, load_key_file
from vault.store import ArchiveStore
from vault.vault import init_vault, open_vault

PASS = "correct horse battery staple"


def test_the_sealed_file_holds_no_key_in_the_clear_and_opens_only_with_its_passphrase(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys.json"
    keys = create_key_file(path, PASS)
    raw = json.loads(path.read_text())
    assert raw["format"] == "archive-vault-keyring-sealed/1" and key_file_is_sealed(path)
    assert not {"kek", "index_root", "audit_signing_key", "vault_id"} & set(raw)
    assert keys.vault_id not in path.read_text()
    assert os.stat(path).st_mode & 0o777 == 0o600
    again = load_key_file(path, PASS)
    assert again.vault_id == keys.vault_id
    assert again.unwrap_dek("secret", 1, keys.wrap_dek("secret", 1, b"k" * 32, b"ad"), b"ad")
    with pytest.raises(
        KeyFileError, match="^" + re.escape(f"wrong passphrase for key file {path}")
    ):
        load_key_file(path, PASS + "!")
    with pytest.raises(KeyFileError, match="is protected by a passphrase"):
        load_key_file(path)
    # Lowering the scrypt cost (to guess faster) breaks the seal; out of bounds is refused.
    for n, says in ((2**16, "wrong passphrase"), (2**10, "outside the accepted bounds")):
        path.write_text(json.dumps({**raw, "n": n}))
        with pytest.raises(KeyFileError, match=says):
            load_key_file(path, PASS)


def test_a_rotation_writes_the_file_sealed_again_and_another_process_sees_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys.json"
    first = create_key_file(path, PASS)
    other = load_key_file(path, PASS)  # loaded before the rotation
    assert first.add_version("internal") == 2
    assert key_file_is_sealed(path) and "kek" not in json.loads(path.read_text())
    wrapped = first.wrap_dek("internal", 2, b"k" * 32, b"ad")
    assert other.unwrap_dek("internal", 2, wrapped, b"ad") == b"k" * 32  # reloaded, unsealed
    assert load_key_file(path, PASS).active_version("internal") == 2


def test_a_vault_with_a_sealed_key_file_round_trips(settings: Settings, engine: sa.Engine) -> None:
    sealed = settings.model_copy(update={"key_passphrase": SecretStr(PASS)})
    vault = init_vault(sealed, engine=engine)
    assert key_file_is_sealed(sealed.resolved_key_file)
    no = ArchiveStore(vault).filing.create(archive(profile={"name": "客户丙"}), actor=SALES)
    store = ArchiveStore(open_vault(sealed, engine=engine))
    read = store.reader.read(no.archive_no, ["identity"], actor=SALES)
    assert read.content["identity"]["name"] == "客户丙"
    with pytest.raises(KeyFileError, match="protected by a passphrase"):
        open_vault(settings, engine=engine)


def _cli(env: dict[str, str], data: Path, *args: str, check: bool = True):
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "400"},  # one line stays one line, however long its path
        stdin=subprocess.DEVNULL,
        timeout=180,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.slow
def test_the_cli_reads_the_passphrase_from_a_file_and_names_a_wrong_one(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text(PASS + "\n")
    secret.chmod(0o600)
    env = {**cli_env, "VAULT_KEY_PASSPHRASE_FILE": str(secret)}
    data = tmp_path / "var"
    _cli(env, data, "init", "--demo")
    assert key_file_is_sealed(data / "keys" / "keyring.json")
    _cli(env, data, "seed", "--customers", "3")
    assert "internal: now v2" in _cli(env, data, "keys", "rotate", "--level", "internal").stdout
    _cli(env, data, "audit", "verify")
    missing = _cli(cli_env, data, "keys", "status", check=False)
    assert missing.returncode != 0 and "protected by a passphrase" in missing.stderr
    secret.write_text("zebra-wrong-77\n")
    wrong = _cli(env, data, "keys", "status", check=False)
    assert wrong.returncode != 0 and "wrong passphrase for key file" in wrong.stderr
    assert "zebra-wrong-77" not in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1
    secret.chmod(0o644)
    opened = _cli(env, data, "keys", "status", check=False)
    assert opened.returncode != 0 and "passphrase file" in opened.stderr


def test_a_clear_key_file_where_a_protected_one_is_configured_is_refused(tmp_path: Path) -> None:
    """An unprotected copy swapped in for the protected file is noticed, not used (and
    never written back unprotected by the next rotation)."""
    path = tmp_path / "keyring.json"
    create_key_file(path)
    with pytest.raises(KeyFileError, match="not protected by a passphrase"):
        load_key_file(path, "a configured passphrase")
    assert load_key_file(path).vault_id  # without one configured it opens as before
