"""Key providers: where the vault's key-encryption keys live.

The default provider is a local JSON key file created by ``init`` with mode
0600, outside the database, holding one versioned KEK hierarchy per
classification level (Art 22: classified material is stored separately), the
root of the blind-index keys, the audit log's Ed25519 signing key and its
audit MAC key (with the first seq it covers, ``audit.mac``), and the record
that every archive of this vault carries a sealed manifest (``manifests``:
kept here because whoever can write the database must not be able to unset
it, see ``vault.manifest.seal_missing``).

``KeyProvider`` is what the store asks of a key custodian: operations, not key
bytes, for what an HSM keeps inside its token (wrapping and unwrapping DEKs
under a level's KEK version, the audit MAC, checkpoint signatures). The file
provider here does them with ``cryptography``; ``vault.hsm`` does them in a
PKCS#11 token. Both hand out derived keys where speed needs them in memory
(blind indexes, token signing).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
import stat
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, cast

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from audit.checkpoint import Ed25519Signer
from audit.mac import MacKey
from vault.crypto import KEY_LEN, Sealer, new_key
from vault.errors import KeyFileError
from vault.keyfile_seal import KeyFileSeal, is_sealed
from vault.models import Classification

LEVELS = tuple(c.value for c in Classification)  # lowest to highest
KEYRING_FORMAT = "archive-vault-keyring/1"


class KeyProvider(Protocol):
    """What the store needs from a key custodian: a key file, or an HSM (``vault.hsm``).

    ``unwrap_dek`` raises ``vault.crypto.InvalidCiphertext`` when the wrapped DEK
    does not open under that KEK with that associated data; a KEK version the
    provider does not hold is a ``KeyFileError`` (from ``check_kek`` too).
    """

    vault_id: str

    def wrap_dek(self, level: str, version: int, dek: bytes, associated: bytes) -> bytes: ...
    def wrap_deks(
        self, level: str, version: int, items: Sequence[tuple[bytes, bytes]]
    ) -> list[bytes]: ...
    def unwrap_dek(self, level: str, version: int, wrapped: bytes, associated: bytes) -> bytes: ...
    def check_kek(self, level: str, version: int) -> None: ...
    def forget_keks(self) -> None: ...
    def active_version(self, level: str) -> int: ...
    def versions(self, level: str) -> dict[int, dict[str, Any]]: ...
    def add_version(self, level: str) -> int: ...
    def retire(self, level: str, version: int) -> None: ...
    def index_key(self, index_name: str) -> bytes: ...
    def audit_signing_key(self) -> Ed25519Signer: ...
    def audit_mac_key(self) -> MacKey | None: ...
    def add_audit_mac_key(self, from_seq: int) -> MacKey: ...
    def manifests_complete(self) -> bool: ...
    def mark_manifests_complete(self) -> None: ...
    def secret(self, name: str) -> bytes: ...


def derive_index_key(root: bytes, vault_id: str, index_name: str) -> bytes:
    """A key per blind index from the index root, so that indexes cannot be cross-matched."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=vault_id.encode(),
        info=b"archive-vault blind-index v1 " + index_name.encode(),
    ).derive(root)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except (ValueError, TypeError):
        raise KeyFileError(f"key file: {what} is not valid base64") from None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _mac_entry(from_seq: int) -> dict[str, Any]:
    return {"key": _b64(new_key()), "from_seq": from_seq, "created_at": _now()}


def _manifests_entry() -> dict[str, Any]:
    return {"all_sealed": True, "since": _now()}


# Entries a key file only ever gains, never loses or changes: a process that loaded the
# file earlier adopts them from the file before it writes, so it never drops one.
_MONOTONIC = ("audit_mac", "manifests")


def new_keyring_data(vault_id: str | None = None) -> dict[str, Any]:
    """Fresh key material for a new vault: KEK v1 per level, index root, audit keys."""
    signing = Ed25519PrivateKey.generate()
    raw_signing = signing.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return {
        "format": KEYRING_FORMAT,
        "vault_id": vault_id or secrets.token_hex(16),
        "created_at": _now(),
        "kek": {
            level: {"active": 1, "versions": {"1": {"key": _b64(new_key()), "created_at": _now()}}}
            for level in LEVELS
        },
        "index_root": _b64(new_key()),
        "audit_signing_key": _b64(raw_signing),
        "audit_mac": _mac_entry(1),
        "manifests": _manifests_entry(),  # a new vault seals a manifest with every archive
        "secrets": {"token_signing": _b64(secrets.token_bytes(32))},
    }


class Keyring:
    """In-memory key material with an optional persistence hook (the file provider's)."""

    def __init__(
        self,
        data: dict[str, Any],
        persist: Callable[[dict[str, Any]], None] | None = None,
        reload: Callable[[], dict[str, Any]] | None = None,
        lock: Callable[[], Any] | None = None,
    ) -> None:
        if data.get("format") != KEYRING_FORMAT:
            raise KeyFileError("key file: not an archive-vault keyring (unknown format)")
        self._data = data
        self._persist = persist
        self._reload = reload
        self._lock = lock or nullcontext
        self._index_cache: dict[str, bytes] = {}
        self._sealers: dict[tuple[str, int], Sealer] = {}
        self.vault_id: str = str(data.get("vault_id", ""))
        for level in LEVELS:
            if level not in data.get("kek", {}):
                raise KeyFileError(f"key file: no key hierarchy for classification {level!r}")

    @classmethod
    def generate(cls) -> Keyring:
        return cls(new_keyring_data())

    def _level(self, level: str) -> dict[str, Any]:
        try:
            return cast(dict[str, Any], self._data["kek"][level])
        except KeyError:
            raise KeyFileError(f"no key hierarchy for classification {level!r}") from None

    def kek(self, level: str, version: int) -> bytes:
        entry = self._level(level)["versions"].get(str(version))
        if entry is None and self._reload is not None:
            # Another process (a rotation) may have added it since we loaded the file.
            fresh = self._reload()
            if fresh.get("vault_id") == self.vault_id:
                self._data = fresh
                entry = self._level(level)["versions"].get(str(version))
        if entry is None or "key" not in entry:
            state = "retired" if entry else "missing"
            raise KeyFileError(f"KEK {level} v{version} is {state} in the key file")
        key = _unb64(entry["key"], f"KEK {level} v{version}")
        if len(key) != KEY_LEN:
            raise KeyFileError(f"key file: KEK {level} v{version} is not 256 bits")
        return key

    def _sealer(self, level: str, version: int) -> Sealer:
        sealer = self._sealers.get((level, version))
        if sealer is None:
            sealer = Sealer(self.kek(level, version), version)
            self._sealers[(level, version)] = sealer
        return sealer

    def wrap_dek(self, level: str, version: int, dek: bytes, associated: bytes) -> bytes:
        """AES-256-GCM under the KEK (the format every file-keyed vault has on disk)."""
        return self._sealer(level, version).seal(dek, associated)

    def wrap_deks(
        self, level: str, version: int, items: Sequence[tuple[bytes, bytes]]
    ) -> list[bytes]:
        return self._sealer(level, version).seal_many(items)

    def unwrap_dek(self, level: str, version: int, wrapped: bytes, associated: bytes) -> bytes:
        return self._sealer(level, version).open(wrapped, associated)

    def check_kek(self, level: str, version: int) -> None:
        self._sealer(level, version)

    def forget_keks(self) -> None:
        """Drop cached KEKs (after a rotation retired some versions)."""
        self._sealers.clear()

    def active_version(self, level: str) -> int:
        return int(self._level(level)["active"])

    def versions(self, level: str) -> dict[int, dict[str, Any]]:
        return {
            int(v): {
                "created_at": e.get("created_at"),
                "retired_at": e.get("retired_at"),
                "active": int(v) == self.active_version(level),
            }
            for v, e in self._level(level)["versions"].items()
        }

    def add_version(self, level: str) -> int:
        entry = self._level(level)
        version = max(int(v) for v in entry["versions"]) + 1
        entry["versions"][str(version)] = {"key": _b64(new_key()), "created_at": _now()}
        entry["active"] = version
        self._save()
        return version

    def retire(self, level: str, version: int) -> None:
        """Destroy an old KEK's material; only ever called once no DEK is wrapped under it."""
        entry = self._level(level)
        if version == int(entry["active"]):
            raise KeyFileError(f"KEK {level} v{version} is active and cannot be retired")
        slot = entry["versions"].get(str(version))
        if slot is None or "key" not in slot:
            return
        slot.pop("key")
        slot["retired_at"] = _now()
        self._sealers.pop((level, version), None)
        self._save()

    def index_key(self, index_name: str) -> bytes:
        """A key per blind index, derived with HKDF so indexes cannot be cross-matched."""
        key = self._index_cache.get(index_name)
        if key is None:
            root = _unb64(self._data.get("index_root"), "index_root")
            key = derive_index_key(root, self.vault_id, index_name)
            self._index_cache[index_name] = key
        return key

    def audit_signing_key(self) -> Ed25519PrivateKey:
        raw = _unb64(self._data.get("audit_signing_key"), "audit_signing_key")
        try:
            return Ed25519PrivateKey.from_private_bytes(raw)
        except ValueError:
            raise KeyFileError("key file: audit_signing_key is not an Ed25519 key") from None

    def audit_mac_key(self) -> MacKey | None:
        """The audit MAC key, or None while this key file has none yet.

        A process that loaded the file before ``upgrade`` (or another process's
        first start) added the key looks again on every call until it is there:
        the audit log asks under its append lock, and the key is added under
        that lock, so no entry after ``from_seq`` is written without a MAC.
        """
        entry = self._data.get("audit_mac")
        if entry is None and self._reload is not None:
            fresh = self._reload()
            if fresh.get("vault_id") == self.vault_id and "audit_mac" in fresh:
                entry = self._data["audit_mac"] = fresh["audit_mac"]
        if entry is None:
            return None
        return self._mac_key(entry)

    @staticmethod
    def _mac_key(entry: Any) -> MacKey:
        if not isinstance(entry, dict):
            raise KeyFileError("key file: audit_mac is malformed")
        key = _unb64(entry.get("key"), "audit_mac key")
        from_seq = entry.get("from_seq")
        if len(key) != KEY_LEN or not isinstance(from_seq, int) or from_seq < 1:
            raise KeyFileError("key file: audit_mac needs a 256-bit key and a from_seq >= 1")
        return MacKey(key=key, from_seq=from_seq)

    def add_audit_mac_key(self, from_seq: int) -> MacKey:
        """Give a key file from before audit MACs its MAC key, MACing from ``from_seq`` on.

        Idempotent across processes: under the key file's lock the file is read
        again, and a key another process added meanwhile is adopted, never
        replaced (replacing it would turn that process's MACs into forgeries).
        Call it holding the audit append lock, with ``from_seq`` = head + 1.
        """
        with self._lock():
            self._adopt()
            if "audit_mac" not in self._data:
                self._data["audit_mac"] = _mac_entry(from_seq)
                self._write()
        return self._mac_key(self._data["audit_mac"])

    def manifests_complete(self) -> bool:
        """Whether every archive of this vault carries a sealed manifest.

        True from ``init`` on, and for an older vault once ``seal_missing`` has
        sealed every archive it found. From then on an archive without a
        manifest was tampered with, never "from before manifests". Recorded in
        the key file because the database is what the attacker can write. A
        process that loaded the file before the flag was set looks again while
        it is unset (only asked when a manifest is missing, so rarely).
        """
        entry = self._data.get("manifests")
        if entry is None and self._reload is not None:
            fresh = self._reload()
            if fresh.get("vault_id") == self.vault_id and "manifests" in fresh:
                entry = self._data["manifests"] = fresh["manifests"]
        if entry is None:
            return False
        if not isinstance(entry, dict) or entry.get("all_sealed") is not True:
            raise KeyFileError("key file: manifests is malformed")
        return True

    def mark_manifests_complete(self) -> None:
        """Record, once and for good, that every archive now carries a sealed manifest."""
        with self._lock():
            self._adopt()
            if "manifests" not in self._data:
                self._data["manifests"] = _manifests_entry()
                self._write()

    def secret(self, name: str) -> bytes:
        """Other named secrets (token signing); created on first use and persisted."""
        store = self._data.setdefault("secrets", {})
        if name not in store:
            store[name] = _b64(secrets.token_bytes(32))
            self._save()
        return _unb64(store[name], f"secret {name}")

    def _save(self) -> None:
        """Persist, keeping what another process added since this one loaded (``_adopt``)."""
        with self._lock():
            self._adopt()
            self._write()

    def _adopt(self) -> None:
        """Take over the entries another process added to the file (the audit MAC key, the
        manifests record) before writing it: call under the file lock. They are only ever
        added, so the file's copy wins and none is dropped or replaced."""
        if self._reload is None or all(k in self._data for k in _MONOTONIC):
            return
        fresh = self._reload()
        if fresh.get("vault_id") != self.vault_id:
            return
        for key in _MONOTONIC:
            if key not in self._data and key in fresh:
                self._data[key] = fresh[key]

    def _write(self) -> None:
        if self._persist is not None:
            self._persist(self._data)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on the key file between read and replace.

    The lock is taken on the file as it is now; a writer replaces it by rename,
    and a process that waited re-reads the path afterwards, so it sees the
    replacement.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} is missing") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_key_file(path: Path, data: dict[str, Any], *, create: bool = False) -> None:
    """Atomically replace (or exclusively create) the key file with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    payload = json.dumps(data, indent=2, sort_keys=True).encode()
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if create:
            # link() fails if the target exists: never overwrite another vault's keys.
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise KeyFileError(
                    f"key file {path} already exists; refusing to overwrite"
                ) from None
        else:
            tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_key_file(path: Path, passphrase: str | None = None) -> Keyring:
    """Open the local key file, refusing one that others can read or that is malformed.

    A passphrase-protected file (``vault.keyfile_seal``) needs ``passphrase``.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(
            f"key file {path} is missing; run `archive-vault init` or set VAULT_KEY_FILE"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"key file {path} is not a regular file")
    if st.st_mode & 0o077:
        raise KeyFileError(
            f"key file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run `chmod 600 {path}`"
        )
    raw = _read(path)
    if not is_sealed(raw):
        if passphrase:
            # Configured for a protected file, given a clear one: a copy swapped in (or a
            # protection lost) must be noticed, not used and written back unprotected.
            raise KeyFileError(
                f"key file {path} is not protected by a passphrase, but one is configured "
                "(VAULT_KEY_PASSPHRASE or VAULT_KEY_PASSPHRASE_FILE): was it replaced? Unset "
                "the passphrase only if this file is meant to be unprotected"
            )
        return _file_keyring(path, raw)
    if not passphrase:
        raise KeyFileError(
            f"key file {path} is protected by a passphrase: type it when asked, or set "
            "VAULT_KEY_PASSPHRASE_FILE"
        )
    seal = KeyFileSeal.for_file(raw, passphrase)
    return _file_keyring(path, seal.open(raw, path), seal)


def key_file_is_sealed(path: Path) -> bool:
    """Whether the key file at ``path`` is passphrase-protected (False when unreadable)."""
    try:
        return is_sealed(_read(path))
    except KeyFileError:
        return False


def _file_keyring(path: Path, data: dict[str, Any], seal: KeyFileSeal | None = None) -> Keyring:
    if seal is None:
        return Keyring(
            data,
            persist=lambda d: write_key_file(path, d),
            reload=lambda: _read(path),
            lock=lambda: _file_lock(path),
        )
    return Keyring(
        data,
        persist=lambda d: write_key_file(path, seal.seal(d)),
        reload=lambda: seal.open(_read(path), path),
        lock=lambda: _file_lock(path),
    )


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        raise KeyFileError(f"key file {path} is unreadable or not JSON") from None
    if not isinstance(data, dict):
        raise KeyFileError(f"key file {path} is not an archive-vault keyring")
    return data


def create_key_file(path: Path, passphrase: str | None = None) -> Keyring:
    """A new vault's key file; sealed under ``passphrase`` when one is given."""
    data = new_keyring_data()
    seal = KeyFileSeal.derive(passphrase) if passphrase else None
    write_key_file(path, seal.seal(data) if seal else data, create=True)
    return _file_keyring(path, data, seal)
