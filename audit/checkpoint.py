"""Signed checkpoints in the C2SP ``tlog-checkpoint`` signed-note format.

Imports only the standard library and ``cryptography`` so the offline verifier
can use it. A checkpoint is the text ``origin\\nsize\\nbase64(root)\\n`` (the
body, nothing else, so standard transparency-log tooling reads it) followed by
a blank line and signature lines (C2SP ``signed-note``):

* ``— <origin> base64(key_id ‖ Ed25519(body))`` where key_id is the first four
  bytes of SHA-256(origin ‖ "\\n" ‖ 0x01 ‖ public key): the log's signature.
* ``— <origin> base64(key_id' ‖ time ‖ Ed25519("cosignature/v1\\ntime T\\n" ‖ body))``
  with key_id' computed the same way over 0x04 (C2SP ``tlog-cosignature``):
  a timestamped signature by the same key, which is how the checkpoint's time
  is signed without adding non-standard lines to the body. Tooling that does
  not know the 0x04 type skips the line, as the signed-note spec requires.

Ed25519 is the only algorithm accepted; there is nothing to negotiate.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04
SIG_PREFIX = "— "  # U+2014 EM DASH then a space, as the signed-note format requires
MAX_NOTE_BYTES = 16 * 1024


class Ed25519Signer(Protocol):
    """What signs for the log: an ``Ed25519PrivateKey`` from the key file fits, and so does
    a key pair held in an HSM that signs inside the token and only hands out its public half.
    The signatures are plain Ed25519 either way, so verifiers cannot tell them apart."""

    def sign(self, data: bytes) -> bytes: ...
    def public_key(self) -> Ed25519PublicKey: ...


class CheckpointError(ValueError):
    """A checkpoint that is malformed, for another log, or whose signature does not verify."""


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint whose signatures have been checked (or just produced)."""

    origin: str
    size: int
    root: bytes
    timestamp: int  # seconds since the Unix epoch, covered by the cosignature
    note: str

    @property
    def root_b64(self) -> str:
        return base64.b64encode(self.root).decode("ascii")


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise CheckpointError(f"invalid signer name {name!r}: no spaces or '+' allowed")


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(name: str, public_key: Ed25519PublicKey, alg: int = ALG_ED25519) -> bytes:
    """The 4-byte key hint that prefixes a signature: binds name, algorithm and key."""
    _check_name(name)
    return hashlib.sha256(
        name.encode() + b"\n" + bytes([alg]) + raw_public_key(public_key)
    ).digest()[:4]


def verifier_key(name: str, public_key: Ed25519PublicKey) -> str:
    """The signed-note verifier key ``name+hex(key_id)+base64(0x01‖key)`` (Go tooling)."""
    kid = key_id(name, public_key)
    raw = bytes([ALG_ED25519]) + raw_public_key(public_key)
    return f"{name}+{kid.hex()}+{base64.b64encode(raw).decode('ascii')}"


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public_key_pem(pem: str | bytes) -> Ed25519PublicKey:
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"public key is not a PEM key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise CheckpointError("public key is not an Ed25519 key")
    return key


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    if "\n" in origin or not origin:
        raise CheckpointError("origin must be one non-empty line")
    if size < 0 or len(root) != 32:
        raise CheckpointError("checkpoint needs a size >= 0 and a 32-byte root")
    return f"{origin}\n{size}\n{base64.b64encode(root).decode('ascii')}\n"


def _cosigned_message(body: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n".encode() + body.encode()


def sign_checkpoint(
    private_key: Ed25519Signer, origin: str, size: int, root: bytes, timestamp: int
) -> SignedCheckpoint:
    body = checkpoint_body(origin, size, root)
    public = private_key.public_key()
    sig = private_key.sign(body.encode())
    cosig = private_key.sign(_cosigned_message(body, timestamp))
    line1 = base64.b64encode(key_id(origin, public) + sig).decode("ascii")
    line2 = base64.b64encode(
        key_id(origin, public, ALG_COSIGNATURE_V1) + struct.pack(">Q", timestamp) + cosig
    ).decode("ascii")
    note = f"{body}\n{SIG_PREFIX}{origin} {line1}\n{SIG_PREFIX}{origin} {line2}\n"
    return SignedCheckpoint(origin=origin, size=size, root=root, timestamp=timestamp, note=note)


def _parse_body(body: str) -> tuple[str, int, bytes]:
    lines = body.split("\n")[:-1]  # the body ends with "\n"
    if len(lines) < 3 or any(not line for line in lines):
        raise CheckpointError("checkpoint body needs origin, size and root lines")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if (
        not size_text.isascii()
        or not size_text.isdigit()
        or (size_text != "0" and size_text[0] == "0")
    ):
        raise CheckpointError(f"checkpoint size {size_text!r} is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointError("checkpoint root is not base64") from None
    if len(root) != 32:
        raise CheckpointError("checkpoint root is not 32 bytes")
    return origin, int(size_text), root


def open_checkpoint(
    note: str, public_key: Ed25519PublicKey, origin: str | None = None
) -> SignedCheckpoint:
    """Parse a signed checkpoint and check both signatures; raise CheckpointError otherwise.

    ``origin`` pins the log the checkpoint must belong to, so a validly signed
    checkpoint of another vault (same key reused by mistake) is refused.
    """
    if len(note.encode("utf-8", "surrogatepass")) > MAX_NOTE_BYTES:
        raise CheckpointError("checkpoint note is too large")
    body, sep, sigs = note.partition("\n\n")
    if not sep:
        raise CheckpointError("checkpoint note has no signature block")
    body += "\n"
    name, size, root = _parse_body(body)
    if origin is not None and name != origin:
        raise CheckpointError(f"checkpoint is for log {name!r}, expected {origin!r}")
    if not sigs.endswith("\n"):
        raise CheckpointError("checkpoint signature block must end with a newline")
    kid = key_id(name, public_key)
    cokid = key_id(name, public_key, ALG_COSIGNATURE_V1)
    signed = cosigned = False
    timestamp = -1
    for line in sigs[:-1].split("\n"):
        if not line.startswith(SIG_PREFIX):
            raise CheckpointError("malformed signature line in checkpoint")
        signer, _, blob_text = line[len(SIG_PREFIX) :].rpartition(" ")
        try:
            blob = base64.b64decode(blob_text, validate=True)
        except (binascii.Error, ValueError):
            raise CheckpointError("checkpoint signature is not base64") from None
        if signer != name or len(blob) < 4:
            continue  # other signers (witnesses) are allowed and ignored
        try:
            if hmac.compare_digest(blob[:4], kid) and len(blob) == 68:
                public_key.verify(blob[4:], body.encode())
                signed = True
            elif hmac.compare_digest(blob[:4], cokid) and len(blob) == 76:
                (ts,) = struct.unpack(">Q", blob[4:12])
                public_key.verify(blob[12:], _cosigned_message(body, ts))
                cosigned, timestamp = True, ts
        except InvalidSignature:
            raise CheckpointError(f"checkpoint signature for size {size} does not verify") from None
    if not signed:
        raise CheckpointError(
            f"checkpoint for size {size} carries no valid signature by the log key"
        )
    if not cosigned:
        raise CheckpointError(f"checkpoint for size {size} carries no signed time")
    return SignedCheckpoint(origin=name, size=size, root=root, timestamp=timestamp, note=note)
