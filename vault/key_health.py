"""Whether this key file can open what this database holds: ``keys status`` and ``/readyz``.

A database restored from before a rotation, served with the key file of after
it (or the other way round), looks fine until an archive wrapped by a version
the key file lacks is read. Both the operator's ``keys status`` and the
service's readiness probe ask the same question here, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vault.crypto import InvalidCiphertext, aad
from vault.errors import KeyFileError
from vault.keys import LEVELS, KeyProvider

# Wrapped and unwrapped under every active KEK by the readiness probe: a fixed
# 256-bit value that is no one's key (key wrap takes whole keys, not text).
PROBE = bytes(range(32))


@dataclass(frozen=True)
class Unreadable:
    """Archives wrapped under a KEK version the keys cannot give (retired or missing)."""

    level: str
    version: int
    archives: int
    state: str  # "retired in" or "missing from"

    def __str__(self) -> str:
        where = f"{self.state} the key file"
        return f"{self.level} v{self.version} ({self.archives} archive(s), {where})"


def unreadable_versions(
    keys: KeyProvider, counts: Mapping[str, Mapping[int, int]]
) -> list[Unreadable]:
    """Versions that wrap archives (``rotation.kek_counts``) but that the keys cannot give.

    What ``keys status``, ``restore`` and ``/readyz`` refuse. A version missing
    only from memory is looked up again (``check_kek`` rereads the key file, or
    asks the token: a rotation by another process may have added it).
    """
    out = []
    for level in LEVELS:
        known = keys.versions(level)
        for version, n in sorted(counts.get(level, {}).items()):
            meta = known.get(int(version))
            if not n or (meta is not None and not meta["retired_at"]):
                continue
            if meta is None:
                try:
                    keys.check_kek(level, int(version))
                    continue
                except KeyFileError:
                    pass
            state = "missing from" if meta is None else "retired in"
            out.append(Unreadable(level, int(version), n, state))
    return out


def unopenable(counts: Mapping[str, Mapping[int, int]], keys: KeyProvider) -> int:
    """How many archives ``unreadable_versions`` leaves unreadable."""
    return sum(u.archives for u in unreadable_versions(keys, counts))


def active_keks_work(keys: KeyProvider) -> bool:
    """Whether the active KEK of every classification wraps and unwraps a probe key,
    the same operations a read and a write use (in the key file's memory or in the token)."""
    for level in LEVELS:
        try:
            version = keys.active_version(level)
            associated = aad("readiness-probe", level, version)
            wrapped = keys.wrap_dek(level, version, PROBE, associated)
            if keys.unwrap_dek(level, version, wrapped, associated) != PROBE:
                return False
        except (KeyFileError, KeyError, ValueError, InvalidCiphertext):
            return False
    return True
