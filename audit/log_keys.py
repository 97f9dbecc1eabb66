"""The log's keys: who signs its checkpoints and who MACs its entries.

Both come from the key provider (the vault's key file, or an HSM that signs
and MACs inside the token), never from the database: the Ed25519 signing key
(or signer), whose public half auditors pin, and the
audit MAC key that makes an entry written without the key file detectable
(``audit.mac``). They are asked for lazily and once, except the MAC key of a
key file that has none yet: it is looked up again until one appears, because
opening the vault may add it under the append lock while this process runs.
"""

from __future__ import annotations

from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.checkpoint import Ed25519Signer, public_key_pem, verifier_key
from audit.mac import EntryMac, MacKey


class AuditKeyProvider(Protocol):
    """What the log needs of a key provider. ``audit_mac_key`` is optional: see ``entry_mac``."""

    @property
    def vault_id(self) -> str: ...

    def audit_signing_key(self) -> Ed25519Signer: ...


class LogKeys:
    """The signing key, its published forms, the entry MAC and the log's origin line."""

    def __init__(self, keys: AuditKeyProvider, origin: str) -> None:
        self.provider = keys
        self.origin = origin
        self._signing_key: Ed25519Signer | None = None
        self._public_key: Ed25519PublicKey | None = None
        self._entry_mac: EntryMac | None = None

    def signing_key(self) -> Ed25519Signer:
        if self._signing_key is None:
            self._signing_key = self.provider.audit_signing_key()
        return self._signing_key

    @property
    def public_key(self) -> Ed25519PublicKey:
        if self._public_key is None:  # asked for every checkpoint row: an HSM is asked once
            self._public_key = self.signing_key().public_key()
        return self._public_key

    def public_key_pem(self) -> str:
        """The PEM public key auditors pin (``python -m audit.verify --pubkey``)."""
        return public_key_pem(self.public_key)

    def verifier_key(self) -> str:
        """The same key as a signed-note verifier key, for Go transparency-log tooling."""
        return verifier_key(self.origin, self.public_key)

    def entry_mac(self) -> EntryMac | None:
        """The MAC under the key file's audit MAC key; None for a provider without one."""
        if self._entry_mac is None:
            get = getattr(self.provider, "audit_mac_key", None)
            key = get() if get is not None else None
            if isinstance(key, MacKey):
                self._entry_mac = EntryMac(key)
        return self._entry_mac
