"""A key file protected by a passphrase: the keyring's JSON sealed with AES-256-GCM under a
key derived from the passphrase with scrypt.

For operators who want a copied key file (a backup, a stolen disk) to be useless without
something only people know. The passphrase is asked for, or read from a file, when a
process starts; the derived key then stays in that process's memory, as the keys do, so
later writes (a rotation, a new secret) seal the file again under the same passphrase
with a fresh nonce. The scrypt parameters and salt are stored in the clear and bound to
the ciphertext as associated data, so they cannot be lowered without the seal failing;
parameters outside the accepted bounds are refused before any work is done.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from vault.errors import KeyFileError

SEALED_FORMAT = "archive-vault-keyring-sealed/1"
# scrypt with N=2**17, r=8, p=1: 128 MiB and a fraction of a second per start.
DEFAULT_N = 2**17
_R, _P = 8, 1
_MIN_N, _MAX_N = 2**14, 2**20
_SALT_LEN = 16
_NONCE_LEN = 12


def is_sealed(raw: dict[str, Any]) -> bool:
    return raw.get("format") == SEALED_FORMAT


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (ValueError, TypeError):
        raise KeyFileError(f"sealed key file: {what} is not valid base64") from None


def _associated(n: int, salt: bytes) -> bytes:
    return json.dumps(
        {"format": SEALED_FORMAT, "kdf": "scrypt", "n": n, "r": _R, "p": _P, "salt": _b64(salt)},
        sort_keys=True,
    ).encode()


@dataclass(frozen=True)
class KeyFileSeal:
    """The derived key and its parameters: seals and opens one key file's keyring."""

    n: int
    salt: bytes
    key: bytes = field(repr=False)

    @classmethod
    def derive(
        cls, passphrase: str, *, n: int = DEFAULT_N, salt: bytes | None = None
    ) -> KeyFileSeal:
        if not passphrase:
            raise KeyFileError("the key file passphrase is empty")
        if not _MIN_N <= n <= _MAX_N or n & (n - 1):
            raise KeyFileError("sealed key file: scrypt cost outside the accepted bounds")
        salt = salt if salt is not None else os.urandom(_SALT_LEN)
        key = Scrypt(salt=salt, length=32, n=n, r=_R, p=_P).derive(passphrase.encode("utf-8"))
        return cls(n=n, salt=salt, key=key)

    @classmethod
    def for_file(cls, raw: dict[str, Any], passphrase: str) -> KeyFileSeal:
        """The seal of a stored sealed key file, derived from its own parameters."""
        n = raw.get("n")
        if raw.get("kdf") != "scrypt" or raw.get("r") != _R or raw.get("p") != _P:
            raise KeyFileError("sealed key file: unknown key derivation")
        if not isinstance(n, int):
            raise KeyFileError("sealed key file: scrypt cost outside the accepted bounds")
        salt = _unb64(raw.get("salt"), "salt")
        if len(salt) != _SALT_LEN:
            raise KeyFileError("sealed key file: salt is not 16 bytes")
        return cls.derive(passphrase, n=n, salt=salt)

    def seal(self, data: dict[str, Any]) -> dict[str, Any]:
        nonce = os.urandom(_NONCE_LEN)
        plain = json.dumps(data, sort_keys=True).encode()
        ct = AESGCM(self.key).encrypt(nonce, plain, _associated(self.n, self.salt))
        return {
            "format": SEALED_FORMAT,
            "kdf": "scrypt",
            "n": self.n,
            "r": _R,
            "p": _P,
            "salt": _b64(self.salt),
            "nonce": _b64(nonce),
            "ciphertext": _b64(ct),
        }

    def open(self, raw: dict[str, Any], path: object) -> dict[str, Any]:
        """The keyring inside ``raw``; a wrong passphrase and tampering read the same."""
        if not is_sealed(raw):
            raise KeyFileError(f"key file {path} is no longer passphrase-protected")
        if raw.get("n") != self.n or _unb64(raw.get("salt"), "salt") != self.salt:
            raise KeyFileError(f"key file {path} was sealed again under another passphrase")
        nonce = _unb64(raw.get("nonce"), "nonce")
        ct = _unb64(raw.get("ciphertext"), "ciphertext")
        if len(nonce) != _NONCE_LEN:
            raise KeyFileError("sealed key file: nonce is not 12 bytes")
        try:
            plain = AESGCM(self.key).decrypt(nonce, ct, _associated(self.n, self.salt))
        except InvalidTag:
            raise KeyFileError(
                f"wrong passphrase for key file {path} (or the file was altered)"
            ) from None
        try:
            data = json.loads(plain)
        except ValueError:
            raise KeyFileError(f"key file {path}: sealed content is not JSON") from None
        if not isinstance(data, dict):
            raise KeyFileError(f"key file {path} is not an archive-vault keyring")
        return data
