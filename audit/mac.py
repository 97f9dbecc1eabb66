"""Per-entry MACs: the part of an entry that write access to the database cannot forge.

The hash chain and the Merkle tree are public arithmetic: anyone who can write
the tables can edit an entry and recompute every hash after it, and until a
checkpoint is signed nothing tells the rewrite apart. Each entry therefore also
carries ``HMAC-SHA256(mac_key, label ‖ seq ‖ prev_hash ‖ leaf_hash)`` under an
audit MAC key kept in the key file with the keyring, never in the database:

* ``leaf_hash`` is recomputed from the entry's canonical bytes by whoever
  checks, so the MAC covers every hashed column;
* ``seq`` and ``prev_hash`` (both also inside the canonical bytes) are bound
  explicitly, so an entry moved to another place, or re-linked behind an
  inserted one, fails even where its content is unchanged.

The MAC lives in its own column and stays out of the Merkle leaf: leaves,
checkpoints, inclusion proofs and bundles stay exactly what auditors already
hold and verify without the key (see the README's audit section).

The key may also live in an HSM that computes the HMAC inside the token
(``MacKey.external``): the MACs are the same HMAC-SHA256 over the same bytes, one
token call per entry instead of a copied keyed state.

A key file created before MACs existed gains a key when the vault is upgraded
or first opened; ``from_seq`` records the first entry written under it, so
older entries are reported as written before MACs began, never as forged.

Imports only the standard library and ``cryptography``.
"""

from __future__ import annotations

import hmac as _hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.hmac import HMAC

MAC_SIZE = 32
_LABEL = b"archive-vault audit-entry-mac v1\n"
_QUEUED_LABEL = b"archive-vault audit-queued-mac v1\n"


@dataclass(frozen=True)
class MacKey:
    """The audit MAC key (raw, or held by an HSM as ``external``) and the first seq under it.

    ``external`` computes HMAC-SHA256 of a message under a key that never leaves its
    token; such a key cannot be handed to the verifier's worker processes, so a log
    under it is verified in one process (``audit.verify_db``).
    """

    key: bytes | None = field(repr=False)
    from_seq: int
    external: Callable[[bytes], bytes] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.key is None) == (self.external is None):
            raise ValueError("the audit MAC key is either raw bytes or held in a token")
        if self.key is not None and len(self.key) != 32:
            raise ValueError("the audit MAC key must be 256 bits")
        if self.from_seq < 1:
            raise ValueError("the audit MAC key must start at a seq >= 1")


class EntryMac:
    """Computes and checks entry MACs under one key (the keyed state is set up once)."""

    __slots__ = ("_base", "_external", "_queued_base", "from_seq", "key")

    def __init__(self, key: MacKey) -> None:
        self.key = key  # for the verifier's worker processes, which build their own
        self._external = key.external
        raw = key.key if key.key is not None else bytes(32)  # unused when external
        self._base = HMAC(raw, hashes.SHA256())
        self._base.update(_LABEL)
        self._queued_base = HMAC(raw, hashes.SHA256())
        self._queued_base.update(_QUEUED_LABEL)
        self.from_seq = key.from_seq

    def compute(self, seq: int, prev_hash: bytes, leaf: bytes) -> bytes:
        message = seq.to_bytes(8, "big") + prev_hash + leaf
        if self._external is not None:
            return self._external(_LABEL + message)
        h = self._base.copy()
        h.update(message)
        return h.finalize()

    def check(self, seq: int, prev_hash: bytes, leaf: bytes, stored: bytes | None) -> bool:
        """True when ``stored`` is this entry's MAC (compared in constant time).

        Anything but bytes (a SQLite column holds whatever was written into it) is no MAC.
        """
        if not isinstance(stored, bytes | bytearray | memoryview):
            return False
        return _hmac.compare_digest(self.compute(seq, prev_hash, leaf), bytes(stored))

    def failures(
        self,
        first: int,
        prev_hashes: Sequence[bytes],
        leaves: Sequence[bytes],
        stored: Sequence[bytes | None],
    ) -> list[int]:
        """The seqs among ``first``, ``first + 1``, ... whose stored MAC is not theirs.

        ``check`` for a run of consecutive entries (the verifier's batches), in
        one loop without a call per entry; entries before ``from_seq`` are skipped.
        """
        if self._external is not None:
            return [
                seq
                for seq, (prev, leaf, mac) in enumerate(
                    zip(prev_hashes, leaves, stored, strict=True), first
                )
                if seq >= self.from_seq and not self.check(seq, prev, leaf, mac)
            ]
        copy = self._base.copy
        same = _hmac.compare_digest
        if first >= self.from_seq:
            # The usual run, every entry under the key and every MAC right: compute them
            # all, then compare each in constant time in one C loop; only a run with a
            # failure (or a missing MAC, which the compare refuses) is gone through again.
            computed: list[bytes] = []
            append = computed.append
            for seq, prev, leaf, _mac in zip(
                range(first, first + len(leaves)), prev_hashes, leaves, stored, strict=True
            ):
                h = copy()
                h.update(seq.to_bytes(8, "big") + prev + leaf)
                append(h.finalize())
            try:
                if all(map(cast(Callable[[bytes, Any], bool], same), computed, stored)):
                    return []
            except TypeError:
                pass
        bad: list[int] = []
        for seq, (prev, leaf, mac) in enumerate(
            zip(prev_hashes, leaves, stored, strict=True), first
        ):
            if seq < self.from_seq:
                continue
            h = copy()
            h.update(seq.to_bytes(8, "big") + prev + leaf)
            if not isinstance(mac, bytes | bytearray | memoryview) or not same(
                h.finalize(), bytes(mac)
            ):
                bad.append(seq)
        return bad

    def queued(self, fields: Sequence[str | None]) -> bytes:
        """The MAC of an entry waiting in the queue (``audit.queue``): over its column texts.

        No seq or hash exists yet, so the stored texts themselves are bound, each
        length-prefixed (a missing value distinct from an empty one) under their
        own label, so a queued MAC can never pass for an entry's MAC or the reverse.
        """
        message = b"".join(
            [
                b"\x00"
                if value is None
                else b"\x01" + len(data := value.encode()).to_bytes(4, "big") + data
                for value in fields
            ]
        )
        if self._external is not None:
            return self._external(_QUEUED_LABEL + message)
        h = self._queued_base.copy()
        h.update(message)
        return h.finalize()

    def check_queued(self, fields: Sequence[str | None], stored: bytes | None) -> bool:
        """True when ``stored`` is this queued entry's MAC (compared in constant time)."""
        if not isinstance(stored, bytes | bytearray | memoryview):
            return False
        return _hmac.compare_digest(self.queued(fields), bytes(stored))

    def required(self, seq: int) -> bool:
        """Whether an entry at ``seq`` must carry a MAC (written after the key existed)."""
        return seq >= self.from_seq
