"""Choosing the key provider from the settings: the key file, or a PKCS#11 token.

``VAULT_KEY_PROVIDER=file`` (the default) keeps the keys in the key file, which
may be sealed under a passphrase (``vault.keyfile_seal``: VAULT_KEY_PASSPHRASE or
its _FILE, else asked for at a terminal); ``pkcs11`` keeps them in an HSM
(``vault.hsm``). A vault stays with the provider it was created with: its
wrapped DEKs name their algorithm, and the other provider does not hold its keys.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from foundation.secret_file import SecretFileError, read_secret_file
from foundation.settings import Settings
from vault.errors import KeyFileError
from vault.hsm import HsmKeys, create_hsm_keys
from vault.keys import KeyProvider, create_key_file, load_key_file
from vault.token_session import open_token


def read_passphrase(settings: Settings) -> str | None:
    """The key file's passphrase from VAULT_KEY_PASSPHRASE or its file (mode 0600), or None."""
    given = settings.key_passphrase.get_secret_value()
    path = settings.key_passphrase_file
    if given and path is not None:
        raise KeyFileError("set VAULT_KEY_PASSPHRASE or VAULT_KEY_PASSPHRASE_FILE, not both")
    if path is None:
        return given or None
    try:
        return read_secret_file(path, "passphrase file")
    except SecretFileError as exc:
        raise KeyFileError(str(exc)) from None


def where(settings: Settings) -> str:
    """Where the keys are, for messages: the key file's path or the token's label."""
    if settings.key_provider == "pkcs11":
        return f"PKCS#11 token {settings.pkcs11_token_label!r}"
    return f"key file {settings.resolved_key_file}"


def check_can_create(settings: Settings) -> None:
    """Refuse, before anything is written, what would stop creating the keys."""
    if settings.key_provider == "pkcs11":
        open_token(settings)  # library, token and PIN: a clear error now, not half-way
        return
    key_file = settings.resolved_key_file
    if key_file.exists():
        raise KeyFileError(
            f"key file {key_file} already exists; refusing to overwrite it (a vault's keys "
            "are never replaced: use another VAULT_KEY_FILE or move it away)"
        )


def create_keys(
    settings: Settings,
    *,
    made_file: Callable[[Path], None],
    made_token_keys: Callable[[Callable[[], list[str]]], None],
) -> KeyProvider:
    """A new vault's keys; each ``made_*`` hook learns what to remove if ``init`` fails."""
    if settings.key_provider == "pkcs11":
        return create_hsm_keys(open_token(settings), lambda keys: made_token_keys(keys.remove_all))
    keys = create_key_file(settings.resolved_key_file, read_passphrase(settings))
    made_file(settings.resolved_key_file)
    return keys


def load_keys(settings: Settings, vault_id: str) -> KeyProvider:
    """The keys of the vault ``vault_id``, refused when they belong to another vault."""
    if settings.key_provider == "pkcs11":
        hsm = HsmKeys(open_token(settings), vault_id)
        hsm.check_present()
        return hsm
    keys = load_key_file(settings.resolved_key_file, read_passphrase(settings))
    if keys.vault_id != vault_id:
        raise KeyFileError(
            f"key file {settings.resolved_key_file} belongs to another vault "
            f"({keys.vault_id[:8]}…, this database is {vault_id[:8]}…)"
        )
    return keys
