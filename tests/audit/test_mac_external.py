"""An audit MAC key held elsewhere (an HSM computing the HMAC): the very same MACs."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from audit.mac import EntryMac, MacKey

KEY = bytes(range(32))


def _outside(message: bytes) -> bytes:
    return hmac.new(KEY, message, hashlib.sha256).digest()


def test_an_external_key_gives_the_same_macs_as_the_raw_key() -> None:
    raw = EntryMac(MacKey(key=KEY, from_seq=3))
    held = EntryMac(MacKey(key=None, from_seq=3, external=_outside))
    prev, leaf = b"\x01" * 32, b"\x02" * 32
    assert held.compute(5, prev, leaf) == raw.compute(5, prev, leaf)
    assert held.compute(5, prev, leaf) != held.compute(6, prev, leaf)
    assert held.queued(["a", None, ""]) == raw.queued(["a", None, ""])
    assert held.check(5, prev, leaf, raw.compute(5, prev, leaf))
    assert not held.check(5, prev, leaf, None)
    assert not held.check_queued(["a"], raw.queued(["b"]))
    good = [raw.compute(seq, prev, leaf) for seq in range(1, 7)]
    stored: list[bytes | None] = [*good]
    stored[4] = b"\x00" * 32  # seq 5
    stored[5] = None  # seq 6
    stored[0] = None  # seq 1: before from_seq, not judged
    args = (1, [prev] * 6, [leaf] * 6, stored)
    assert held.failures(*args) == raw.failures(*args) == [5, 6]


def test_a_mac_key_is_raw_or_external_never_both_nor_neither() -> None:
    with pytest.raises(ValueError, match="either raw bytes or held in a token"):
        MacKey(key=KEY, from_seq=1, external=_outside)
    with pytest.raises(ValueError, match="either raw bytes or held in a token"):
        MacKey(key=None, from_seq=1)
    with pytest.raises(ValueError, match="256 bits"):
        MacKey(key=b"short", from_seq=1)
    with pytest.raises(ValueError, match="seq >= 1"):
        MacKey(key=None, from_seq=0, external=_outside)
    assert "external" not in repr(MacKey(key=None, from_seq=1, external=_outside))
