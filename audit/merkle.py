"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs, and the canonical entry bytes.

This module imports only the standard library, on purpose: the offline
verifier (``audit/verify.py``) uses it, and an auditor must be able to run that
with nothing but Python and ``cryptography``.

Hashes (RFC 9162 §2.1.1, SHA-256 only, no algorithm agility to get wrong):

* leaf hash = SHA-256(0x00 ‖ canonical entry bytes)
* node hash = SHA-256(0x01 ‖ left ‖ right)
* the root of the empty tree is SHA-256 of the empty string

The leaf hash of an entry doubles as its link in the hash chain: each entry
carries the previous entry's leaf hash in ``prev_hash`` (32 zero bytes for the
first), so one hash per entry serves both the chain and the tree.

Canonical entry bytes (defined here and nowhere else): the entry as a JSON
object with exactly the keys of ``ENTRY_FIELDS``, serialised with sorted keys,
compact separators (``,`` and ``:``), non-ASCII characters written as-is
(``ensure_ascii=False``) and the result encoded as UTF-8. Values are JSON
strings, integers, booleans, null, lists and objects only: floats are refused
when an entry is written because their text form is not portable between
languages. ``prev_hash`` is lowercase hex, ``time`` is UTC in the fixed-width
form ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` and ``v`` is the format version (1).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any

HASH_SIZE = 32
ZERO_HASH = bytes(HASH_SIZE)
ENTRY_FORMAT_VERSION = 1
ENTRY_FIELDS: tuple[str, ...] = (
    "action",
    "actor",
    "actor_role",
    "archives",
    "client",
    "detail",
    "grant_id",
    "groups",
    "outcome",
    "prev_hash",
    "purpose",
    "reason",
    "seq",
    "time",
    "v",
)
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
_sha256 = hashlib.sha256


class ProofError(ValueError):
    """A proof or tree parameter that does not verify; the message says which check failed."""


def canonical_entry_bytes(entry: Mapping[str, Any]) -> bytes:
    """The exact bytes that are hashed for an entry (see the module docstring).

    Refuses a mapping with missing or extra keys, so a field cannot silently
    drop out of (or sneak into) what the signature ultimately covers.
    """
    if len(entry) != len(ENTRY_FIELDS) or any(k not in entry for k in ENTRY_FIELDS):
        missing = sorted(set(ENTRY_FIELDS) - set(entry))
        extra = sorted(set(entry) - set(ENTRY_FIELDS))
        raise ValueError(
            f"entry fields differ from the canonical set: missing {missing}, extra {extra}"
        )
    return _CANONICAL.encode(entry).encode("utf-8")


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def empty_root() -> bytes:
    return _sha256(b"").digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2): RFC 9162's k."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaves(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf hashes, computed with a compact range (O(log n) memory)."""
    rng = CompactRange()
    for leaf in leaves:
        rng.append(leaf)
    return rng.root()


class CompactRange:
    """The roots of the perfect subtrees that make up a tree of ``size`` leaves.

    This is what lets verification stream a million entries: only about
    log2(n) hashes are held, and the root is folded from them on demand. The
    same list, stored next to a signed checkpoint, lets the next checkpoint
    extend the tree from where the last one stopped instead of re-reading the log.
    """

    __slots__ = ("_hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count():
            raise ProofError(
                f"a compact range of size {size} has {size.bit_count()} hashes, not {len(hashes)}"
            )
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ProofError("compact range hashes must be 32 bytes")
        self.size = size
        self._hashes = list(hashes)

    @property
    def hashes(self) -> list[bytes]:
        return list(self._hashes)

    def append(self, leaf: bytes) -> None:
        stack = self._hashes
        stack.append(leaf)
        n = self.size
        self.size = n + 1
        # Each trailing one bit of the old size is a complete left sibling to merge with.
        while n & 1:
            right = stack.pop()
            stack[-1] = _sha256(b"\x01" + stack[-1] + right).digest()
            n >>= 1

    def root(self) -> bytes:
        if not self._hashes:
            return empty_root()
        it = reversed(self._hashes)
        acc = next(it)
        for h in it:
            acc = node_hash(h, acc)
        return acc

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self._hashes)


class MerkleTree:
    """A whole tree in memory with every perfect subtree hash kept, for producing proofs.

    Used where proofs are made (bundle export, ``AuditLog.inclusion_proof``):
    with all levels cached each proof costs O(log² n) hashes instead of
    re-hashing the tree. Verification never needs this class.
    """

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self._levels: list[list[bytes]] = [list(leaves)]
        level = self._levels[0]
        while len(level) > 1:
            level = [
                _sha256(b"\x01" + level[i] + level[i + 1]).digest()
                for i in range(0, len(level) - 1, 2)
            ]
            self._levels.append(level)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def leaf(self, index: int) -> bytes:
        return self._levels[0][index]

    def _subtree(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for the ranges RFC 9162's recursion produces (lo aligned to 2^k)."""
        n = hi - lo
        if n == 0:
            return empty_root()
        if n & (n - 1) == 0 and lo % n == 0:
            height = n.bit_length() - 1
            return self._levels[height][lo >> height]
        k = _split(n)
        return node_hash(self._subtree(lo, lo + k), self._subtree(lo + k, hi))

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ProofError(f"tree size {size} is beyond the {self.size} leaves held")
        return self._subtree(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]) of RFC 9162 §2.1.3.1 (index is 0-based)."""
        size = self.size if size is None else size
        if not 0 <= index < size <= self.size:
            raise ProofError(f"no leaf {index} in a tree of size {size}")
        proof: list[bytes] = []
        lo, hi = 0, size
        # Walk down from the root, collecting the sibling of each subtree containing index.
        while hi - lo > 1:
            k = _split(hi - lo)
            if index < lo + k:
                proof.append(self._subtree(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._subtree(lo, lo + k))
                lo = lo + k
        proof.reverse()
        return proof

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """PROOF(size1, D[size2]) of RFC 9162 §2.1.4.1; empty when size1 is 0 or equal to size2."""
        size2 = self.size if size2 is None else size2
        if not 0 <= size1 <= size2 <= self.size:
            raise ProofError(f"no consistency proof from size {size1} to size {size2}")
        if size1 in (0, size2):
            return []
        proof: list[bytes] = []
        lo, hi, m, whole = 0, size2, size1, True
        while True:
            n = hi - lo
            if m == n:
                if not whole:
                    proof.append(self._subtree(lo, hi))
                break
            k = _split(n)
            if m <= k:
                proof.append(self._subtree(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._subtree(lo, lo + k))
                lo, m, whole = lo + k, m - k, False
        proof.reverse()
        return proof


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof implies (RFC 9162 §2.1.3.2); ProofError if malformed."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    _check_hash(leaf, "leaf hash")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        _check_hash(p, "proof element")
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ProofError unless ``proof`` shows leaf ``index`` (0-based) is under ``root``."""
    _check_hash(root, "root")
    got = root_from_inclusion_proof(index, size, leaf, proof)
    if not hmac.compare_digest(got, root):
        raise ProofError(
            f"inclusion proof for leaf {index} does not lead to the root of size {size}"
        )


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Raise ProofError unless tree (size2, root2) extends (size1, root1): RFC 9162 §2.1.4.2."""
    _check_hash(root1, "first root")
    _check_hash(root2, "second root")
    for p in proof:
        _check_hash(p, "proof element")
    if not 0 <= size1 <= size2:
        raise ProofError(f"size {size2} cannot extend size {size1}")
    if size1 == size2:
        if proof:
            raise ProofError("a proof between equal sizes must be empty")
        if not hmac.compare_digest(root1, root2):
            raise ProofError(f"two different roots for the same size {size1}")
        return
    if size1 == 0:
        if proof:
            raise ProofError("a proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than expected")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than expected")
    if not hmac.compare_digest(fr, root1):
        raise ProofError(f"consistency proof does not reproduce the root of size {size1}")
    if not hmac.compare_digest(sr, root2):
        raise ProofError(f"consistency proof does not reproduce the root of size {size2}")
