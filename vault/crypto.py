"""The one sealing recipe every ciphertext in the vault goes through.

Callers never pick a mode or a nonce: ``seal`` uses AES-256-GCM with a fresh
96-bit random nonce and writes a self-describing header (format version,
algorithm id, key version) that is itself authenticated, so old and new formats
can coexist and a flipped header byte fails like any other tampering.

Layout: ``0xA5 | format(1) | alg(1) | key_version(4, big-endian) | nonce(12) | ct+tag``.

A DEK wrapped inside an HSM (``vault.hsm``) carries the same header with its own
algorithm id, ``ALG_AES_256_KWP``, followed by the RFC 5649 wrap of the DEK joined
with a digest of its associated data (``bind_key``): key wrap has no associated
data of its own, and the binding to vault, archive and level must not be lost.
Such a blob never opens as AES-GCM, nor the reverse.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = 0xA5
FORMAT_V1 = 1
ALG_AES_256_GCM = 1
# Explicit allow-list: a ciphertext naming any other algorithm is refused.
ALGORITHMS = {ALG_AES_256_GCM: "AES-256-GCM"}
# DEKs wrapped in a token: AES-256 key wrap with padding (RFC 5649), not a sealing algorithm.
ALG_AES_256_KWP = 2
_BINDING_LABEL = b"archive-vault/dek-binding/1"
BINDING_LEN = 32
_HEADER = struct.Struct(">BBBI")
HEADER_LEN = _HEADER.size
NONCE_LEN = 12
TAG_LEN = 16
KEY_LEN = 32
OVERHEAD = HEADER_LEN + NONCE_LEN + TAG_LEN


class InvalidCiphertext(Exception):
    """Authentication failed or the blob is malformed; deliberately says no more."""


def new_key() -> bytes:
    return os.urandom(KEY_LEN)


def new_keys(count: int) -> list[bytes]:
    """``count`` fresh keys from one draw of the OS's randomness (a bulk import's DEKs)."""
    raw = os.urandom(KEY_LEN * count)
    return [raw[i : i + KEY_LEN] for i in range(0, KEY_LEN * count, KEY_LEN)]


AAD_LABEL = b"archive-vault/aad/1"


def aad(*parts: str | int | bytes) -> bytes:
    """Length-prefixed encoding so no two different part lists give the same bytes."""
    return AAD_LABEL + aad_tail(*parts)


def aad_tail(*parts: str | int | bytes) -> bytes:
    """The parts' length-prefixed encoding alone: ``aad(*a, *b) == aad(*a) + aad_tail(*b)``.

    A bulk writer builds the parts shared by many ciphertexts once (the archive
    number; the group, level and revision) and joins them, with the same bytes
    ``aad`` gives.
    """
    out = []
    for part in parts:
        raw = (
            part.encode()
            if isinstance(part, str)
            else (str(part).encode() if isinstance(part, int) else bytes(part))
        )
        out.append(len(raw).to_bytes(4, "big"))
        out.append(raw)
    return b"".join(out)


def key_version_of(blob: bytes) -> int:
    """Which key version sealed ``blob``, read from its header (not yet authenticated)."""
    return _parse_header(blob)[3]


def _parse_header(blob: bytes) -> tuple[int, int, int, int]:
    if len(blob) < OVERHEAD:
        raise InvalidCiphertext
    magic, fmt, alg, version = _HEADER.unpack_from(blob)
    if magic != MAGIC or fmt != FORMAT_V1 or alg not in ALGORITHMS:
        raise InvalidCiphertext
    return magic, fmt, alg, version


class Sealer:
    """AES-256-GCM under one key, with that key's version written into each header."""

    __slots__ = ("_aead", "_header", "version")

    def __init__(self, key: bytes, version: int) -> None:
        if len(key) != KEY_LEN:
            raise ValueError("keys are 256 bits")
        self._aead = AESGCM(key)
        self._header = _HEADER.pack(MAGIC, FORMAT_V1, ALG_AES_256_GCM, version)
        self.version = version

    def seal(self, plaintext: bytes, associated: bytes) -> bytes:
        header = self._header
        nonce = os.urandom(NONCE_LEN)
        return header + nonce + self._aead.encrypt(nonce, plaintext, header + associated)

    def seal_many(self, items: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
        """``seal`` of each (plaintext, associated data), the nonces drawn in one call.

        The same recipe and format as ``seal``, each nonce a fresh random 96 bits:
        a bulk import seals a dozen ciphertexts per archive under its DEK and
        wraps a whole batch of DEKs under one KEK, where a system call per nonce
        showed. The randomness is drawn here and used at once, never kept.
        """
        header = self._header
        encrypt = self._aead.encrypt
        nonces = os.urandom(NONCE_LEN * len(items))
        out = []
        at = 0
        for plaintext, associated in items:
            nonce = nonces[at : at + NONCE_LEN]
            at += NONCE_LEN
            out.append(header + nonce + encrypt(nonce, plaintext, header + associated))
        return out

    def open(self, blob: bytes, associated: bytes) -> bytes:
        _, _, _, version = _parse_header(blob)
        if version != self.version:
            raise InvalidCiphertext
        header = blob[:HEADER_LEN]
        nonce = blob[HEADER_LEN : HEADER_LEN + NONCE_LEN]
        try:
            return self._aead.decrypt(nonce, blob[HEADER_LEN + NONCE_LEN :], header + associated)
        except InvalidTag:
            raise InvalidCiphertext from None


def kwp_blob(version: int, wrapped: bytes) -> bytes:
    """A token-wrapped DEK as stored: the header naming key wrap and the KEK version."""
    return _HEADER.pack(MAGIC, FORMAT_V1, ALG_AES_256_KWP, version) + wrapped


def kwp_body(blob: bytes, version: int) -> bytes:
    """The wrapped bytes of a token-wrapped DEK under KEK ``version``; anything else refused."""
    if len(blob) < HEADER_LEN + 16:
        raise InvalidCiphertext
    magic, fmt, alg, found = _HEADER.unpack_from(blob)
    if magic != MAGIC or fmt != FORMAT_V1 or alg != ALG_AES_256_KWP or found != version:
        raise InvalidCiphertext
    return blob[HEADER_LEN:]


def _binding(header: bytes, associated: bytes) -> bytes:
    return hashlib.sha256(_BINDING_LABEL + header + associated).digest()


def bind_key(key: bytes, version: int, associated: bytes) -> bytes:
    """What a token wraps: the key, then a digest of its header and associated data.

    Key wrap is deterministic authenticated encryption of the whole value, so a
    wrapped DEK moved to another archive or level (other associated data) or
    relabelled to another version fails ``unbind_key`` like a tampered one.
    """
    if len(key) != KEY_LEN:
        raise ValueError("keys are 256 bits")
    header = _HEADER.pack(MAGIC, FORMAT_V1, ALG_AES_256_KWP, version)
    return key + _binding(header, associated)


def unbind_key(value: bytes, version: int, associated: bytes) -> bytes:
    """The key out of ``bind_key``'s value, when its binding matches (in constant time)."""
    if len(value) != KEY_LEN + BINDING_LEN:
        raise InvalidCiphertext
    header = _HEADER.pack(MAGIC, FORMAT_V1, ALG_AES_256_KWP, version)
    if not hmac.compare_digest(value[KEY_LEN:], _binding(header, associated)):
        raise InvalidCiphertext
    return value[:KEY_LEN]
