"""Signed reports: a JSON document signed with the audit log's Ed25519 key.

An inspection report (Art 14) is signed by the same key that signs the log's
checkpoints, so whoever pinned that key (``archive-vault audit pubkey``) can
check a report offline with nothing else. The signed message is
``archive-vault/signed-report/v1\\n`` followed by the canonical JSON of the
body (sorted keys, no spaces, UTF-8): the prefix makes a report signature
useless as a checkpoint signature and the reverse (a checkpoint body starts with
the log's origin line, a cosignature with ``cosignature/v1``).

The document carries the public key and its SHA-256 fingerprint and the
checkpoint key id, so a reader can tell which key signed it; verification only
trusts that embedded key when no pinned key is given, and then says so.

Imports only the standard library and ``cryptography`` (like ``audit.checkpoint``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.checkpoint import Ed25519Signer, key_id, raw_public_key

FORMAT = "archive-vault-signed-report/1"
CONTEXT = b"archive-vault/signed-report/v1\n"
ALGORITHM = "Ed25519"  # the only one accepted


def canonical(body: Any) -> bytes:
    """The one byte form of a JSON body that is signed and hashed."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def body_sha256(body: Any) -> str:
    """The report's hash, as recorded in its audit entry and its stored row."""
    return hashlib.sha256(canonical(body)).hexdigest()


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw 32-byte public key, hex: what an auditor compares by eye."""
    return hashlib.sha256(raw_public_key(public_key)).hexdigest()


def sign_report(body: dict[str, Any], private_key: Ed25519Signer, origin: str) -> dict[str, Any]:
    """The signed document: format, body and a signature block naming the key."""
    public = private_key.public_key()
    signature = private_key.sign(CONTEXT + canonical(body))
    return {
        "format": FORMAT,
        "body": body,
        "signature": {
            "algorithm": ALGORITHM,
            "origin": origin,
            "key_id": key_id(origin, public).hex(),
            "public_key": base64.b64encode(raw_public_key(public)).decode("ascii"),
            "public_key_sha256": fingerprint(public),
            "body_sha256": body_sha256(body),
            "value": base64.b64encode(signature).decode("ascii"),
        },
    }


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    why: str
    fingerprint: str = ""
    pinned: bool = False


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{what} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not base64") from None


def verify_report(doc: Any, public_key: Ed25519PublicKey | None = None) -> Verdict:
    """Whether ``doc`` is a report signed by ``public_key`` (or by its embedded key).

    Never raises on bad input: a malformed document is a failed verdict saying why.
    """
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return Verdict(False, f"not a signed report (format {FORMAT!r} expected)")
    sig, body = doc.get("signature"), doc.get("body")
    if not isinstance(sig, dict) or not isinstance(body, dict):
        return Verdict(False, "the report has no body or no signature block")
    if sig.get("algorithm") != ALGORITHM:
        return Verdict(False, f"unsupported signature algorithm (only {ALGORITHM})")
    try:
        embedded = Ed25519PublicKey.from_public_bytes(_b64(sig.get("public_key"), "public_key"))
        value = _b64(sig.get("value"), "signature value")
    except ValueError as exc:
        return Verdict(False, str(exc))
    key = public_key or embedded
    print_ = fingerprint(key)
    if public_key is not None and raw_public_key(public_key) != raw_public_key(embedded):
        return Verdict(False, "signed with another key than the pinned one", print_, True)
    claimed = sig.get("public_key_sha256")
    if not isinstance(claimed, str) or not hmac.compare_digest(claimed, fingerprint(embedded)):
        return Verdict(False, "the key fingerprint does not match the key", print_)
    try:
        key.verify(value, CONTEXT + canonical(body))
    except InvalidSignature:
        return Verdict(False, "the signature does not verify: the report was changed", print_)
    stated = sig.get("body_sha256")
    if not isinstance(stated, str) or not hmac.compare_digest(stated, body_sha256(body)):
        return Verdict(False, "the stated body hash does not match the body", print_)
    return Verdict(True, "signature verifies", print_, public_key is not None)
