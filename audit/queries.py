"""Compliance queries over the stored entries, and inclusion and consistency proofs.

Queries return entries as stored, never failing on a damaged row: listing is
not verifying, and ``verify`` names what is wrong. Proofs are computed from
entries re-hashed and chain-checked (``audit.chain``), against the newest
signed tree unless a size is given.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from audit.chain import tree
from audit.codec import ENTRY_COLUMNS, format_time, parse_time
from audit.errors import AuditQueryError
from audit.events import AuditAction, Outcome
from audit.models import archive_ref_table, entry_table
from audit.signer import CheckpointSigner

MAX_QUERY_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One entry as returned to compliance queries (the API maps it to its wire schema)."""

    seq: int
    time: datetime
    actor: str
    actor_role: str
    action: str
    outcome: str
    archives: tuple[str, ...]
    groups: tuple[str, ...]
    grant_id: str | None
    purpose: str | None
    reason: str | None
    client: str | None
    detail: dict[str, Any]
    entry_hash: str

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> AuditRecord:
        """A record from a row of ``ENTRY_COLUMNS``; unparseable JSON lists as empty."""
        (
            seq,
            when,
            actor,
            role,
            action,
            outcome,
            archives,
            groups,
            grant_id,
            purpose,
            reason,
            client,
            detail,
            _prev,
            stored,
        ) = row
        return cls(
            seq=int(seq),
            time=parse_time(when),
            actor=actor,
            actor_role=role,
            action=action,
            outcome=outcome,
            archives=tuple(_loads(archives, [])),
            groups=tuple(_loads(groups, [])),
            grant_id=grant_id,
            purpose=purpose,
            reason=reason,
            client=client,
            detail=_loads(detail, {}),
            entry_hash=bytes(stored).hex(),
        )


def _loads(text: str, default: Any) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return default  # a damaged row still lists; `verify` reports it


def _query_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise AuditQueryError("query times must be timezone-aware")
    return format_time(moment)


def query(
    engine: Engine,
    *,
    actor: str | None = None,
    archive: str | None = None,
    action: AuditAction | str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    outcome: Outcome | str | None = None,
    limit: int = 100,
    offset: int = 0,
    newest_first: bool = True,
) -> list[AuditRecord]:
    """Entries matching every given filter; ``since`` inclusive, ``until`` exclusive."""
    if not 1 <= limit <= MAX_QUERY_LIMIT:
        raise AuditQueryError(f"limit must be between 1 and {MAX_QUERY_LIMIT}")
    if offset < 0:
        raise AuditQueryError("offset must not be negative")
    t = entry_table.c
    stmt = sa.select(*ENTRY_COLUMNS)
    if actor is not None:
        stmt = stmt.where(t.actor == actor)
    if action is not None:
        try:
            stmt = stmt.where(t.action == AuditAction(action).value)
        except ValueError:
            raise AuditQueryError(f"unknown audit action {action!r}") from None
    if outcome is not None:
        try:
            stmt = stmt.where(t.outcome == Outcome(outcome).value)
        except ValueError:
            raise AuditQueryError(f"unknown outcome {outcome!r}") from None
    if since is not None:
        stmt = stmt.where(t.time >= _query_time(since))
    if until is not None:
        stmt = stmt.where(t.time < _query_time(until))
    if archive is not None:
        # The archive index beside the log (written with each entry), not its JSON text.
        ref = archive_ref_table.c
        stmt = stmt.where(t.seq.in_(sa.select(ref.seq).where(ref.archive_no == archive)))
    stmt = stmt.order_by(t.seq.desc() if newest_first else t.seq).limit(limit).offset(offset)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [AuditRecord.from_row(tuple(r)) for r in rows]


class Proofs:
    """RFC 9162 proofs over the stored log, by default against the newest signed tree."""

    def __init__(self, engine: Engine, signer: CheckpointSigner) -> None:
        self._engine = engine
        self._signer = signer

    def inclusion(self, seq: int, size: int | None = None) -> list[bytes]:
        """Inclusion proof of entry ``seq`` in tree ``size``."""
        size = size or self._signed_size()
        if not 1 <= seq <= size:
            raise AuditQueryError(f"entry {seq} is not in a tree of size {size}")
        return tree(self._engine, size).inclusion_proof(seq - 1, size)

    def inclusion_many(self, seqs: Sequence[int], size: int) -> dict[int, list[bytes]]:
        """Inclusion proofs of several entries in tree ``size``, the tree built once."""
        wanted = sorted(set(seqs))
        if not wanted:
            return {}
        if wanted[0] < 1 or wanted[-1] > size:
            raise AuditQueryError(
                f"entries {wanted[0]}..{wanted[-1]} are not all in a tree of {size}"
            )
        built = tree(self._engine, size)
        return {seq: built.inclusion_proof(seq - 1, size) for seq in wanted}

    def consistency(self, size1: int, size2: int | None = None) -> list[bytes]:
        """Consistency proof between two tree sizes."""
        size2 = size2 or self._signed_size()
        if not 0 <= size1 <= size2:
            raise AuditQueryError(f"no consistency proof from {size1} to {size2}")
        return tree(self._engine, size2).consistency_proof(size1, size2)

    def _signed_size(self) -> int:
        cp = self._signer.latest()
        if cp is None:
            raise AuditQueryError("no checkpoint has been signed yet")
        return cp.size
