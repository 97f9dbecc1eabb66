"""Blind indexes: exact-match search without decrypting, and keyed hashes for the audit log.

A blind index is HMAC-SHA256 under a per-field index key over the normalised
value, truncated to the vault's ``index_bits`` so that many archives share a
bucket by design (a bucket says little about a value); a search confirms its
candidates by decrypting. The audit log records a full-length keyed hash of a
searched value under a separate key, never the value.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any

from sqlmodel import Session, col, delete

from vault.keys import KeyProvider
from vault.models import BlindIndex
from vault.rows import rowcount
from vault.schema import ProfileSchema


class BlindIndexes:
    """Computing, writing and erasing the blind-index rows of archives."""

    def __init__(self, keys: KeyProvider, schema: ProfileSchema, bits: int) -> None:
        self.keys = keys
        self.schema = schema
        self.mask = (1 << bits) - 1
        # One keyed HMAC state per field, copied per value: the key is not re-processed
        # for each of the hundreds of thousands of values an import indexes.
        self._macs: dict[str, hmac.HMAC] = {}

    def bucket(self, field_name: str, normalised: str) -> int:
        base = self._macs.get(field_name)
        if base is None:
            base = hmac.new(self.keys.index_key(field_name), digestmod=hashlib.sha256)
            self._macs[field_name] = base
        mac = base.copy()
        mac.update(normalised.encode())
        return int.from_bytes(mac.digest()[:4], "big") & self.mask

    def query_hmac(self, field_name: str, normalised: str) -> str:
        """Full-length keyed hash of a searched value, for the audit log (never the value)."""
        key = self.keys.index_key("audit-query:" + field_name)
        return hmac.new(key, normalised.encode(), hashlib.sha256).hexdigest()

    def rows(
        self, archive_id: int, groups: Mapping[str, Mapping[str, str]]
    ) -> list[dict[str, Any]]:
        """The index rows of a new archive's groups, for a bulk insert."""
        return [
            {"archive_id": archive_id, "field": name, "value": value}
            for name, value in self.buckets(groups)
        ]

    def buckets(self, groups: Mapping[str, Mapping[str, str]]) -> list[tuple[str, int]]:
        """(field, bucket) of each searchable field a new archive's groups hold."""
        out: list[tuple[str, int]] = []
        fields = self.schema.fields
        for name in self.schema.searchable:
            value = groups.get(fields[name].group, {}).get(name)
            if value is not None:
                out.append((name, self.bucket(name, value)))
        return out

    def reindex(
        self, session: Session, archive_id: int, group: str, fields: Mapping[str, str]
    ) -> None:
        """Replace the index rows of one group after it changed."""
        for name in self.schema.searchable:
            if self.schema.fields[name].group != group:
                continue
            session.execute(
                delete(BlindIndex).where(
                    col(BlindIndex.archive_id) == archive_id, col(BlindIndex.field) == name
                )
            )
            if name in fields:
                session.add(
                    BlindIndex(
                        archive_id=archive_id, field=name, value=self.bucket(name, fields[name])
                    )
                )

    def erase(self, session: Session, archive_id: int, groups: Sequence[str]) -> int:
        """Delete the index rows of the named groups; how many went."""
        fields = [n for n in self.schema.searchable if self.schema.fields[n].group in groups]
        result = session.execute(
            delete(BlindIndex).where(
                col(BlindIndex.archive_id) == archive_id, col(BlindIndex.field).in_(fields)
            )
        )
        return rowcount(result)
