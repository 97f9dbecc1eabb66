"""Demo vaults: marked at creation, so that ``demo`` and ``seed`` never touch a real vault.

``archive-vault demo`` adds accounts of every role with a published password
and ``seed`` adds synthetic customers. Both are for a vault made for the
purpose; pointed at a real one (a restored production copy, say), ``demo``
would plant known-password administrator, compliance and officer accounts.

The marker is a ``vault_meta`` row whose value is an HMAC, under a key derived
from the key file, of this vault's id. What each party can do about it:

- With write access to the database alone (a DBA, the service's login role, a
  restored copy), one can insert the row, or copy it from a real demo vault,
  but not compute a valid value for this vault: the key is in the key file,
  and a copied value is bound to the other vault's id and key. ``demo`` then
  refuses, exactly as for a vault without the row. Deleting the row only makes
  ``demo`` refuse (fail closed).
- Whoever holds the key file and the database can forge the marker, but can
  already add any account with ``archive-vault user add``: the marker guards
  against running ``demo`` on the wrong vault, by mistake or because a
  database-only insider arranged it, not against the key holder.

``open_vault`` has already checked that the key file belongs to this database
(``vault_id``), so the marker is checked against the key file's vault id.
"""

from __future__ import annotations

import hmac
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.hmac import HMAC
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlmodel import Session, select

from vault.errors import VaultError
from vault.keys import KeyProvider
from vault.models import VaultMeta

META_KEY = "demo_marker"
_INFO = b"archive-vault demo-vault marker v1"


class NotADemoVault(VaultError):
    """``demo`` or ``seed`` pointed at a vault that was not created as a demo vault."""

    code = "not-a-demo-vault"


def marker_value(keys: KeyProvider) -> str:
    """HMAC-SHA256 of the vault id under a key derived (HKDF) from the key file's secret.

    Derived from the token-signing secret that every key file holds, so
    checking a marker never writes to the key file of a vault that has none.
    """
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=keys.vault_id.encode(), info=_INFO
    ).derive(keys.secret("token_signing"))
    mac = HMAC(key, hashes.SHA256())
    mac.update(b"demo vault " + keys.vault_id.encode())
    return mac.finalize().hex()


def mark_demo(session: Session, keys: KeyProvider) -> None:
    """Record, at creation and in the creating transaction, that this vault is a demo."""
    session.add(VaultMeta(key=META_KEY, value=marker_value(keys)))


def is_demo(engine: Any, keys: KeyProvider) -> bool:
    with Session(engine) as session:
        row = session.exec(select(VaultMeta.value).where(VaultMeta.key == META_KEY)).first()
    if not row:
        return False
    return hmac.compare_digest(str(row).encode(), marker_value(keys).encode())


_WHY = {
    "demo": "adds accounts of every role with a published password",
    "seed": "writes synthetic customer archives",
}


def require_demo(vault: Any, command: str) -> None:
    """Refuse ``command`` on a vault that is not a demo vault, saying why and what to do."""
    if not is_demo(vault.engine, vault.keys):
        raise NotADemoVault(
            f"not a demo vault: `archive-vault {command}` {_WHY.get(command, 'is for demos')} "
            "and runs only on a vault created by `archive-vault demo` (or `init --demo`); "
            "point --data-dir or VAULT_DATABASE_URL at a new location (an old demo vault "
            "made before this check: remove it yourself and run demo again)"
        )
