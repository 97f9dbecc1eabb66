"""The PKCS#11 key provider: the vault's keys live in an HSM token and never leave it.

Objects in the token, all labelled ``av-<vault_id>-…`` so one token can hold
several vaults:

* ``kek-<level>-v<N>``: an AES-256 key per level and version, sensitive and
  not extractable, allowed only to wrap and unwrap. A DEK is wrapped inside
  the token with AES key wrap with padding (RFC 5649, ``CKM_AES_KEY_WRAP_PAD``)
  together with a digest of its associated data (``vault.crypto.bind_key``);
  the stored blob names that algorithm in its header, so it is never taken for
  a key file's AES-GCM wrapping. A rotation adds ``v<N+1>``; retiring a
  version destroys its object.
* ``audit-mac``: the audit MAC key (a generic secret): every entry MAC is an
  HMAC-SHA256 computed in the token, one call per entry.
* ``audit-sign``: an Ed25519 key pair (``CKK_EC_EDWARDS``); checkpoints and
  reports are signed in the token (``CKM_EDDSA``). The signatures are plain
  Ed25519, checked with the exported public key like a key file's.
* ``derive``: a generic secret from which, by one HMAC in the token per name,
  the blind-index root and the other secrets (token signing, CSRF) are derived
  once per process and then kept in memory: a search computes many index HMACs
  and a round trip to the token for each would be too slow. Whoever reads this
  process's memory gets those derived keys, as with the key file.

A vault keyed in a token is created with all of these, so its audit MAC key
covers the log from entry 1 and every archive carries a sealed manifest.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Callable, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as px
from pkcs11.util.ec import encode_named_curve_parameters

from audit.mac import MacKey
from vault import crypto
from vault.crypto import InvalidCiphertext
from vault.keys import LEVELS, derive_index_key
from vault.token_session import HsmError, Token

ED25519_OID = "1.3.101.112"  # id-Ed25519 (RFC 8410), as CKA_EC_PARAMS of the key pair
_DERIVE_LABEL = b"archive-vault/token-derive/1\n"
# Attributes every key the provider creates carries: kept in the token, usable only
# after login, and its value never readable or wrappable out of it.
_KEPT = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.MODIFIABLE: False,
}
_NO_USE = {
    Attribute.ENCRYPT: False,
    Attribute.DECRYPT: False,
    Attribute.WRAP: False,
    Attribute.UNWRAP: False,
    Attribute.SIGN: False,
    Attribute.VERIFY: False,
    Attribute.DERIVE: False,
}
# What a token answers to a wrapped key that fails its integrity check (SoftHSM2 says
# CKR_GENERAL_ERROR); any other failure is the token's, reported as such, never "tampered".
_REFUSED_WRAP = (
    px.WrappedKeyInvalid,
    px.WrappedKeyLenRange,
    px.EncryptedDataInvalid,
    px.EncryptedDataLenRange,
    px.DataInvalid,
    px.DataLenRange,
    px.GeneralError,
)
# A DEK in transit through the token: a session object, removed right after use.
_TRANSIT = {Attribute.TOKEN: False, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True}


def label(vault_id: str, name: str) -> str:
    return f"av-{vault_id}-{name}"


def kek_name(level: str, version: int) -> str:
    return f"kek-{level}-v{version}"


class TokenSigner:
    """An Ed25519 key pair in the token: signs inside it, hands out only the public key."""

    def __init__(self, token: Token, private: Any, public: Ed25519PublicKey) -> None:
        self._token = token
        self._private = private
        self._public = public

    def sign(self, data: bytes) -> bytes:
        with self._token.use("signing") as _:
            return bytes(self._private.sign(data, mechanism=Mechanism.EDDSA))

    def public_key(self) -> Ed25519PublicKey:
        return self._public


def _raw_point(point: bytes) -> bytes:
    """CKA_EC_POINT of an Edwards key: the 32 raw bytes, DER OCTET STRING-wrapped or not."""
    if len(point) == 34 and point[:2] == b"\x04\x20":
        return point[2:]
    if len(point) == 32:
        return point
    raise HsmError("the token's audit signing key is not an Ed25519 key")


class HsmKeys:
    """``KeyProvider`` over a PKCS#11 token (see the module docstring for its objects)."""

    def __init__(self, token: Token, vault_id: str) -> None:
        self.token = token
        self.vault_id = vault_id
        self._objects: dict[str, Any] = {}
        self._derived: dict[str, bytes] = {}
        self._index: dict[str, bytes] = {}
        self._signer: TokenSigner | None = None

    # -- objects ---------------------------------------------------------------------

    def _find(self, name: str, cls: ObjectClass) -> Any | None:
        full = label(self.vault_id, name)
        cache_key = f"{cls.name}:{full}"
        found = self._objects.get(cache_key)
        if found is not None:
            return found
        with self.token.use(f"finding {full}") as session:
            hits = list(session.get_objects({Attribute.LABEL: full, Attribute.CLASS: cls}))
        if len(hits) > 1:
            raise HsmError(f"PKCS#11 token {self.token.label!r} holds {len(hits)} keys {full}")
        if not hits:
            return None
        if cls in (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY):
            self._check_kept(hits[0], full)
        self._objects[cache_key] = hits[0]
        return hits[0]

    def _check_kept(self, obj: Any, full: str) -> None:
        """A key the vault uses was made in this token and can never leave it.

        Anyone with the PIN can import a key they know under the label of the next
        KEK version; new archives would then be wrapped under it and readable
        outside the token. Such an object lacks CKA_LOCAL (generated on the
        token) or is extractable, and is refused.
        """
        with self.token.use(f"checking {full}"):  # the object's session, under its lock
            try:
                kept = (
                    bool(obj[Attribute.LOCAL])
                    and bool(obj[Attribute.SENSITIVE])
                    and not bool(obj[Attribute.EXTRACTABLE])
                )
            except px.PKCS11Error:
                kept = False
        if not kept:
            raise HsmError(
                f"key object {full} in PKCS#11 token {self.token.label!r} was not generated "
                "there or can leave it (imported or extractable): refused"
            )

    def _need(self, name: str, cls: ObjectClass = ObjectClass.SECRET_KEY) -> Any:
        found = self._find(name, cls)
        if found is None:
            raise HsmError(
                f"key object {label(self.vault_id, name)} is missing from PKCS#11 token "
                f"{self.token.label!r}"
            )
        return found

    def _kek(self, level: str, version: int) -> Any:
        if level not in LEVELS:
            raise HsmError(f"no key hierarchy for classification {level!r}")
        return self._need(kek_name(level, version))

    # -- DEKs ------------------------------------------------------------------------

    def wrap_dek(self, level: str, version: int, dek: bytes, associated: bytes) -> bytes:
        kek = self._kek(level, version)
        value = crypto.bind_key(dek, version, associated)
        with self.token.use(f"wrapping a DEK under KEK {level} v{version}") as session:
            transit = session.create_object(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
                    Attribute.VALUE: value,
                    **_TRANSIT,
                }
            )
            try:
                wrapped = kek.wrap_key(transit, mechanism=Mechanism.AES_KEY_WRAP_PAD)
            finally:
                transit.destroy()
        return crypto.kwp_blob(version, bytes(wrapped))

    def wrap_deks(
        self, level: str, version: int, items: Sequence[tuple[bytes, bytes]]
    ) -> list[bytes]:
        return [self.wrap_dek(level, version, dek, ad) for dek, ad in items]

    def unwrap_dek(self, level: str, version: int, wrapped: bytes, associated: bytes) -> bytes:
        body = crypto.kwp_body(wrapped, version)
        kek = self._kek(level, version)
        with self.token.lock:
            self.token.check_process()
            try:
                transit = kek.unwrap_key(
                    ObjectClass.SECRET_KEY,
                    KeyType.GENERIC_SECRET,
                    body,
                    mechanism=Mechanism.AES_KEY_WRAP_PAD,
                    store=False,
                    template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
                )
            except _REFUSED_WRAP:
                raise InvalidCiphertext from None  # tampered: the wrap's integrity check failed
            except px.PKCS11Error as exc:
                raise HsmError(
                    f"PKCS#11 token {self.token.label!r}: unwrapping failed ({type(exc).__name__})"
                ) from None
            try:
                value = bytes(transit[Attribute.VALUE])
            except px.PKCS11Error:
                raise HsmError(f"PKCS#11 token {self.token.label!r}: unwrapping failed") from None
            finally:
                with contextlib.suppress(px.PKCS11Error):
                    transit.destroy()
        return crypto.unbind_key(value, version, associated)

    def check_kek(self, level: str, version: int) -> None:
        self._kek(level, version)

    def forget_keks(self) -> None:
        self._objects.clear()

    # -- versions ----------------------------------------------------------------------

    def _kek_versions(self, level: str) -> list[int]:
        pattern = re.compile(re.escape(label(self.vault_id, f"kek-{level}-v")) + r"([1-9][0-9]*)")
        found = []
        with self.token.use("listing KEKs") as session:
            for obj in session.get_objects(
                {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES}
            ):
                match = pattern.fullmatch(str(obj[Attribute.LABEL]))
                if match:
                    found.append(int(match.group(1)))
        return sorted(found)

    def active_version(self, level: str) -> int:
        found = self._kek_versions(level)
        if not found:
            raise HsmError(
                f"key object {label(self.vault_id, kek_name(level, 1))} is missing from "
                f"PKCS#11 token {self.token.label!r}"
            )
        return found[-1]

    def versions(self, level: str) -> dict[int, dict[str, Any]]:
        """The versions whose object is in the token (a retired one was destroyed)."""
        found = self._kek_versions(level)
        return {
            v: {"created_at": None, "retired_at": None, "active": v == found[-1]} for v in found
        }

    def add_version(self, level: str) -> int:
        version = self.active_version(level) + 1
        self._generate_kek(level, version)
        return version

    def _generate_kek(self, level: str, version: int) -> Any:
        name = kek_name(level, version)
        if self._find(name, ObjectClass.SECRET_KEY) is not None:
            raise HsmError(f"key object {label(self.vault_id, name)} exists already")
        with self.token.use(f"creating {label(self.vault_id, name)}") as session:
            return session.generate_key(
                KeyType.AES,
                256,
                label=label(self.vault_id, name),
                id=secrets.token_bytes(8),
                store=True,
                template={**_NO_USE, **_KEPT, Attribute.WRAP: True, Attribute.UNWRAP: True},
            )

    def retire(self, level: str, version: int) -> None:
        """Destroy an old KEK in the token; only ever called once no DEK is wrapped under it."""
        if version == self.active_version(level):
            raise HsmError(f"KEK {level} v{version} is active and cannot be retired")
        obj = self._find(kek_name(level, version), ObjectClass.SECRET_KEY)
        if obj is None:
            return
        with self.token.use(f"destroying KEK {level} v{version}"):
            obj.destroy()
        self._objects.clear()

    # -- derived keys and secrets --------------------------------------------------------

    def _derive(self, purpose: str) -> bytes:
        """32 bytes derived in the token (HMAC-SHA256 under ``derive``), once per process."""
        value = self._derived.get(purpose)
        if value is None:
            key = self._need("derive")
            with self.token.use("deriving a key") as _:
                value = bytes(
                    key.sign(_DERIVE_LABEL + purpose.encode(), mechanism=Mechanism.SHA256_HMAC)
                )
            self._derived[purpose] = value
        return value

    def index_key(self, index_name: str) -> bytes:
        key = self._index.get(index_name)
        if key is None:
            key = derive_index_key(self._derive("index-root"), self.vault_id, index_name)
            self._index[index_name] = key
        return key

    def secret(self, name: str) -> bytes:
        return self._derive("secret:" + name)

    # -- audit -------------------------------------------------------------------------

    def audit_signing_key(self) -> TokenSigner:
        if self._signer is None:
            private = self._need("audit-sign", ObjectClass.PRIVATE_KEY)
            public = self._need("audit-sign", ObjectClass.PUBLIC_KEY)
            with self.token.use("reading the audit public key") as _:
                point = bytes(public[Attribute.EC_POINT])
            raw = _raw_point(point)
            try:
                key = Ed25519PublicKey.from_public_bytes(raw)
            except ValueError:
                raise HsmError("the token's audit signing key is not an Ed25519 key") from None
            self._signer = TokenSigner(self.token, private, key)
        return self._signer

    def _mac(self, message: bytes) -> bytes:
        key = self._need("audit-mac")
        with self.token.use("computing an audit MAC") as _:
            return bytes(key.sign(message, mechanism=Mechanism.SHA256_HMAC))

    def audit_mac_key(self) -> MacKey:
        self._need("audit-mac")
        return MacKey(key=None, from_seq=1, external=self._mac)

    def add_audit_mac_key(self, from_seq: int) -> MacKey:
        return self.audit_mac_key()  # created with the vault: there is one from seq 1

    def manifests_complete(self) -> bool:
        return True  # created with the vault: every archive has carried one from the start

    def mark_manifests_complete(self) -> None:
        return None

    # -- creation ----------------------------------------------------------------------

    def check_present(self) -> None:
        """Refuse a token without this vault's keys, naming the first missing object."""
        self._need("audit-sign", ObjectClass.PRIVATE_KEY)
        self._need("audit-mac")
        self._need("derive")
        for level in LEVELS:
            self.active_version(level)

    def remove_all(self) -> list[str]:
        """Destroy every object of this vault in the token (a failed ``init``'s undo)."""
        left = []
        prefix = label(self.vault_id, "")
        with self.token.lock:
            self.token.check_process()
            try:
                objects = [
                    o
                    for o in self.token.session.get_objects({})
                    if str(o[Attribute.LABEL]).startswith(prefix)
                ]
            except px.PKCS11Error:
                return [f"objects {prefix}* in PKCS#11 token {self.token.label!r}"]
            for obj in objects:
                try:
                    obj.destroy()
                except px.PKCS11Error:
                    left.append(f"an object {prefix}* in PKCS#11 token {self.token.label!r}")
        self._objects.clear()
        return left


def create_hsm_keys(token: Token, register: Callable[[HsmKeys], None]) -> HsmKeys:
    """A new vault's keys in the token; ``register`` learns of them before the first is made,
    so a failure part-way is undone (``HsmKeys.remove_all``) with the rest of ``init``."""
    keys = HsmKeys(token, secrets.token_hex(16))
    register(keys)
    for level in LEVELS:
        keys._generate_kek(level, 1)
    with token.use("creating the audit MAC key") as session:
        for name in ("audit-mac", "derive"):
            session.generate_key(
                KeyType.GENERIC_SECRET,
                256,
                label=label(keys.vault_id, name),
                id=secrets.token_bytes(8),
                store=True,
                template={**_NO_USE, **_KEPT, Attribute.SIGN: True},
            )
    with token.use("creating the audit signing key pair") as session:
        params = session.create_domain_parameters(
            KeyType.EC_EDWARDS,
            {Attribute.EC_PARAMS: encode_named_curve_parameters(ED25519_OID)},
            local=True,
        )
        params.generate_keypair(
            mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
            store=True,
            label=label(keys.vault_id, "audit-sign"),
            id=secrets.token_bytes(8),
            public_template={Attribute.TOKEN: True, Attribute.VERIFY: True},
            private_template={
                **_KEPT,
                Attribute.SIGN: True,
                Attribute.DECRYPT: False,
                Attribute.UNWRAP: False,
                Attribute.DERIVE: False,
            },
        )
    keys.check_present()
    return keys
