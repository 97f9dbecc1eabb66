"""The entry MAC as specified, checked against an independent HMAC computation.

The log computes and checks MACs with the same code, so a change to what the
MAC covers (its label, the width of ``seq``, the order of the parts) would still
agree with itself. These vectors recompute the documented construction with the
standard library: ``HMAC-SHA256(key, label ‖ seq (8 bytes, big-endian) ‖
prev_hash ‖ leaf_hash)``, which is what an auditor holding the key checks.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from audit.mac import MAC_SIZE, EntryMac, MacKey

KEY = bytes(range(32))
LABEL = b"archive-vault audit-entry-mac v1\n"
PREV = hashlib.sha256(b"previous entry").digest()
LEAF = hashlib.sha256(b"this entry").digest()


def _reference(seq: int, prev: bytes, leaf: bytes, key: bytes = KEY) -> bytes:
    return hmac.new(key, LABEL + seq.to_bytes(8, "big") + prev + leaf, hashlib.sha256).digest()


@pytest.mark.parametrize("seq", [1, 2, 255, 256, 2**40 + 7])
def test_mac_is_the_documented_hmac(seq: int) -> None:
    mac = EntryMac(MacKey(KEY, 1))
    assert mac.compute(seq, PREV, LEAF) == _reference(seq, PREV, LEAF)
    assert len(mac.compute(seq, PREV, LEAF)) == MAC_SIZE == 32


def test_mac_is_the_same_on_every_call() -> None:
    """The keyed state is set up once and copied: one computation leaves no trace in the next."""
    mac = EntryMac(MacKey(KEY, 1))
    first = mac.compute(5, PREV, LEAF)
    mac.compute(6, LEAF, PREV)
    assert mac.compute(5, PREV, LEAF) == first


def test_check_accepts_only_this_entrys_mac() -> None:
    mac = EntryMac(MacKey(KEY, 1))
    good = _reference(9, PREV, LEAF)
    assert mac.check(9, PREV, LEAF, good) is True
    assert mac.check(9, PREV, LEAF, bytearray(good)) is True  # as a driver may return it
    for seq, prev, leaf, stored in [
        (10, PREV, LEAF, good),  # moved to another place
        (9, LEAF, LEAF, good),  # re-linked behind another entry
        (9, PREV, PREV, good),  # content changed
        (9, PREV, LEAF, good[:-1] + bytes([good[-1] ^ 1])),
        (9, PREV, LEAF, _reference(9, PREV, LEAF, key=bytes(32))),  # another key
        (9, PREV, LEAF, None),  # no MAC at all
        (9, PREV, LEAF, b""),
    ]:
        assert mac.check(seq, prev, leaf, stored) is False


def test_required_from_the_first_entry_under_the_key() -> None:
    mac = EntryMac(MacKey(KEY, 42))
    assert mac.from_seq == 42
    assert mac.required(42) is True
    assert mac.required(43) is True
    assert mac.required(41) is False


@pytest.mark.parametrize("length", [0, 16, 31, 33])
def test_the_key_is_256_bits(length: int) -> None:
    with pytest.raises(ValueError, match=r"^the audit MAC key must be 256 bits$"):
        MacKey(bytes(length), 1)


@pytest.mark.parametrize("from_seq", [0, -1])
def test_the_key_starts_at_a_positive_seq(from_seq: int) -> None:
    with pytest.raises(ValueError, match=r"^the audit MAC key must start at a seq >= 1$"):
        MacKey(KEY, from_seq)
    assert MacKey(KEY, 1).from_seq == 1


def test_the_key_is_not_in_its_repr() -> None:
    assert KEY.hex() not in repr(MacKey(KEY, 1)) and str(KEY) not in repr(MacKey(KEY, 1))


def test_failures_of_a_run_are_the_entries_check_refuses() -> None:
    """``failures`` (the verifier's batches) against the documented HMAC, entry by entry."""
    mac = EntryMac(MacKey(KEY, 12))
    first = 10
    prevs = [hashlib.sha256(bytes([i])).digest() for i in range(8)]
    leaves = [hashlib.sha256(bytes([i, 1])).digest() for i in range(8)]
    stored: list[bytes | None] = [
        _reference(first + i, prevs[i], leaves[i]) for i in range(len(leaves))
    ]
    stored[0] = None  # before from_seq: never checked
    stored[1] = b"\x00" * 32  # before from_seq: never checked
    stored[3] = None  # seq 13: missing
    stored[4] = _reference(first + 5, prevs[4], leaves[4])  # seq 14 carries seq 15's MAC
    stored[6] = _reference(first + 6, leaves[6], prevs[6])  # seq 16: parts swapped
    bad = mac.failures(first, prevs, leaves, stored)
    assert bad == [13, 14, 16]
    assert bad == [
        first + i
        for i in range(len(leaves))
        if first + i >= 12 and not mac.check(first + i, prevs[i], leaves[i], stored[i])
    ]
    assert mac.failures(first, [], [], []) == []
    with pytest.raises(ValueError, match="zip"):
        mac.failures(first, prevs, leaves[:-1], stored)


@pytest.mark.parametrize("damage", [None, "missing", "wrong", "moved", "short", "view"])
def test_failures_of_a_run_wholly_under_the_key(damage: str | None) -> None:
    """A run past ``from_seq`` (the verifier's usual batch): right MACs pass, any other fails."""
    mac = EntryMac(MacKey(KEY, 3))
    first = 5
    prevs = [hashlib.sha256(bytes([i])).digest() for i in range(6)]
    leaves = [hashlib.sha256(bytes([i, 2])).digest() for i in range(6)]
    stored: list[Any] = [_reference(first + i, prevs[i], leaves[i]) for i in range(6)]
    if damage == "missing":
        stored[2] = None
    elif damage == "wrong":
        stored[2] = bytes(32)
    elif damage == "moved":
        stored[2], stored[3] = stored[3], stored[2]
    elif damage == "short":
        stored[2] = stored[2][:31]
    elif damage == "view":
        stored = [memoryview(m) for m in stored]  # bytes-like from a driver: still right
    expected = {None: [], "view": [], "moved": [7, 8]}.get(damage, [7])
    assert mac.failures(first, prevs, leaves, stored) == expected
    with pytest.raises(ValueError, match="zip"):
        mac.failures(first, prevs, leaves, stored[:-1])
