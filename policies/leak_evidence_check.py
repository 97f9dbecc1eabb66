"""Re-checking evidence frozen into a leak case, long after it was frozen.

``EvidenceChecker.verify`` trusts nothing stored with the record: the
checkpoint's signature under the log's key, each entry's hash and inclusion
proof (``audit.evidence.check_frozen``), the record's digest against the
attaching ``leak:change`` audit entry, the same question asked of the log again
up to the same head, and a consistency proof from the record's checkpoint to
the log's newest. What fails is named in ``problems``, in identifiers only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from audit import evidence
from audit.codec import canonical_from_row
from audit.errors import AuditError
from audit.events import AuditAction
from audit.log import AuditLog
from audit.merkle import ProofError, leaf_hash, verify_consistency
from audit.stored import as_bytes
from policies.leak_evidence_models import LeakEvidence


@dataclass(frozen=True, slots=True)
class EvidenceQuery:
    """The question: ``archives`` (default: the case's) or ``account`` (default: the case's)."""

    kind: str
    since: datetime
    until: datetime
    archives: tuple[str, ...] = ()
    account: str | None = None


@dataclass(slots=True)
class EvidenceCheck:
    """The result of re-checking a frozen record: ``ok`` when ``problems`` is empty."""

    evidence: str
    entries: int
    tree_size: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def record_digest(ev: LeakEvidence, case_uid: str) -> str:
    """SHA-256 over everything a record states (canonical JSON), as its audit entry repeats."""
    body = {
        "uid": ev.uid,
        "case": case_uid,
        "kind": ev.kind,
        "account": ev.account,
        "archives": list(ev.archives),
        "since": ev.since.astimezone(UTC).isoformat(),
        "until": ev.until.astimezone(UTC).isoformat(),
        "head_seq": int(ev.head_seq),
        "entries": list(ev.entries),
        "tree_size": int(ev.tree_size),
        "checkpoint": ev.checkpoint,
        "proofs": dict(ev.proofs),
        "created_by": ev.created_by,
        "created_at": ev.created_at.astimezone(UTC).isoformat(),
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class EvidenceChecker:
    """Re-checks records; ``rows`` asks the log the record's question again."""

    def __init__(
        self, audit: AuditLog, rows: Callable[[EvidenceQuery, int], list[tuple[Any, ...]]]
    ) -> None:
        self.audit = audit
        self._rows = rows

    def verify(self, ev: LeakEvidence, case_uid: str) -> EvidenceCheck:
        """Re-check a frozen record against the public key, its audit entry and the log."""
        report = EvidenceCheck(ev.uid, len(ev.entries), int(ev.tree_size))
        problems = report.problems
        if record_digest(ev, case_uid) != ev.digest:
            problems.append("the evidence row was changed after it was frozen (digest differs)")
        cp, bad = evidence.check_frozen(
            ev.entries, ev.checkpoint, ev.proofs, self.audit.public_key, self.audit.origin
        )
        problems.extend(bad)
        if cp is not None and cp.size != ev.tree_size:
            problems.append("the recorded tree size is not the checkpoint's")
        self._check_attached(ev, case_uid, problems)
        self._check_log(ev, problems)
        if cp is not None:
            self._check_extends(cp.size, cp.root, problems)
        return report

    def _check_attached(self, ev: LeakEvidence, case_uid: str, problems: list[str]) -> None:
        rows = self.audit.entries_by_seq([int(ev.audit_seq or 0)])
        if not rows:
            problems.append("the audit entry that attached the evidence is missing")
            return
        row = rows[0]
        stored = evidence.freeze([row])[0]
        raw = stored.get("detail")
        detail: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if (
            stored.get("action") != AuditAction.LEAK_CHANGE.value
            or detail.get("evidence") != ev.uid
            or detail.get("case") != case_uid
            or detail.get("digest") != ev.digest
        ):
            problems.append(
                f"audit entry {ev.audit_seq} does not record this evidence with this digest"
            )
        if not _row_intact(row):
            problems.append(f"audit entry {ev.audit_seq} no longer matches its stored hash")

    def _check_log(self, ev: LeakEvidence, problems: list[str]) -> None:
        """The same question asked again, up to the same head, gives the same entries."""
        q = EvidenceQuery(
            ev.kind, ev.since, ev.until, archives=tuple(ev.archives), account=ev.account
        )
        try:
            rows = self._rows(q, int(ev.head_seq))
        except (AuditError, ValueError) as exc:
            problems.append(f"the log could not be asked again ({type(exc).__name__})")
            return
        frozen = {e.get("seq"): e.get("entry_hash") for e in ev.entries}
        now = {int(r[0]): r for r in rows}
        missing = sorted(set(frozen) - set(now), key=str)
        extra = sorted(set(now) - set(frozen))
        if missing:
            problems.append(f"entries {missing[:10]} are frozen but not in the log's answer")
        if extra:
            problems.append(f"entries {extra[:10]} are in the log's answer but not frozen")
        for seq, row in now.items():
            if seq in frozen and (not _row_intact(row) or as_bytes(row[14]).hex() != frozen[seq]):
                problems.append(f"entry {seq} in the log no longer matches the frozen copy")

    def _check_extends(self, size: int, root: bytes, problems: list[str]) -> None:
        """The log's newest checkpoint still extends the one the evidence was proven under."""
        try:
            latest = self.audit.latest_checkpoint()
            if latest is None or latest.size < size:
                problems.append("the log's newest checkpoint is older than the evidence's")
                return
            proof = self.audit.consistency_proof(size, latest.size)
            verify_consistency(size, latest.size, root, latest.root, proof)
        except (AuditError, ProofError) as exc:
            problems.append(f"the log no longer extends the evidence's checkpoint: {exc}")


def _row_intact(row: tuple[Any, ...]) -> bool:
    try:
        return leaf_hash(canonical_from_row(row)) == as_bytes(row[14])
    except (TypeError, ValueError):
        return False
