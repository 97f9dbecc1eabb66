"""The audit log of one vault: what every writer and reader of the log holds.

``AuditLog`` puts the log's collaborators together and is the one object the
vault, the policies, the API and the command line are given:

* ``audit.appender``: an entry in the caller's open transaction (fail-closed;
  never commits): queued on PostgreSQL, chained under ``audit.locks`` on SQLite;
* ``audit.queue``: the sequencer that chains queued entries (every reader of
  the log below integrates first, so it reads every committed entry);
* ``audit.signer``: which stored checkpoints to trust, and signing the next;
* ``audit.cadence``: when to sign (soon after commits, every N entries or T s);
* ``audit.queries``: compliance queries and inclusion/consistency proofs;
* ``audit.verify_db`` and ``audit.bundle``: verification and export;
* ``audit.log_keys``: the signing and MAC keys, from the key file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Engine

from audit import evidence
from audit.appender import Appender
from audit.bundle import export_bundle
from audit.cadence import DEFAULT_EVERY_ENTRIES, DEFAULT_EVERY_SECONDS, SigningCadence
from audit.checkpoint import SignedCheckpoint
from audit.events import AuditAction, AuditEvent, Outcome
from audit.locks import Handle, head_of
from audit.log_keys import AuditKeyProvider, LogKeys
from audit.mac import EntryMac
from audit.queries import AuditRecord, Proofs, query
from audit.queue import Integrated, inspect_queue, integrate
from audit.signer import CheckpointSigner
from audit.verify import Problem, Report
from audit.verify_db import verify_database

DEFAULT_QUEUE_ALARM_SECONDS = 60.0
log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AuditLog:
    """The append-only, tamper-evident audit log of one vault (see the module docstring).

    ``settings`` is read for ``audit_checkpoint_every_entries``,
    ``audit_checkpoint_every_seconds`` and ``audit_origin``; any object with
    none of them gives the defaults.
    """

    def __init__(
        self,
        *,
        engine: Engine,
        keys: AuditKeyProvider,
        settings: object,
        clock: Callable[[], datetime] | None = None,
        auto_checkpoint: bool = True,
    ) -> None:
        self.engine = engine
        self.keys = keys
        self.settings = settings
        self.auto_checkpoint = auto_checkpoint
        clock = clock or _utcnow
        self._clock = clock
        origin = getattr(settings, "audit_origin", None) or f"archive-vault/audit/{keys.vault_id}"
        self._keys = LogKeys(keys, str(origin))
        self._signer = CheckpointSigner(engine, self._keys)
        self._cadence = SigningCadence(
            engine,
            self._signer,
            clock,
            every_entries=int(
                getattr(settings, "audit_checkpoint_every_entries", DEFAULT_EVERY_ENTRIES)
            ),
            every_seconds=float(
                getattr(settings, "audit_checkpoint_every_seconds", DEFAULT_EVERY_SECONDS)
            ),
            prepare=self.integrate,
        )
        self._appender = Appender(self._keys, clock, self._cadence if auto_checkpoint else None)
        self._proofs = Proofs(engine, self._signer)

    # -- keys -----------------------------------------------------------------

    @property
    def origin(self) -> str:
        """The log's name in its checkpoints (``archive-vault/audit/<vault id>`` by default)."""
        return self._keys.origin

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._keys.public_key

    def public_key_pem(self) -> str:
        """The PEM public key auditors pin (``python -m audit.verify --pubkey``)."""
        return self._keys.public_key_pem()

    def verifier_key(self) -> str:
        """The same key as a signed-note verifier key, for Go transparency-log tooling."""
        return self._keys.verifier_key()

    def entry_mac(self) -> EntryMac | None:
        """The MAC under the key file's audit MAC key; None for a provider without one."""
        return self._keys.entry_mac()

    # -- append -----------------------------------------------------------------

    def append(self, session: Handle, event: AuditEvent) -> None:
        """Append one entry in the caller's open transaction. Never commits.

        Durable when that transaction commits; its seq is given by the sequencer
        (at once on SQLite). Raises AuditWriteFailed for an invalid event or a
        database failure; the caller must then roll back and release nothing.
        """
        self._appender.append(session, event)

    def append_sequenced(self, session: Handle, event: AuditEvent) -> int:
        """Append one entry at its final place now; returns its seq. Never commits.

        For entries another record cites by seq. Holds the append lock until the
        caller's transaction ends: keep that transaction short.
        """
        return self._appender.append_sequenced(session, event)

    def integrate(self, *, wait: bool = True) -> Integrated:
        """Give every committed queued entry its place in the chain (PostgreSQL; see
        ``audit.queue``). A queued entry whose MAC fails is left queued and logged.
        ``wait=False``: return at once if another sequencer is at work."""
        done = integrate(self.engine, self.entry_mac, wait=wait)
        if done.refused:
            log.error(
                "audit queue: %d queued entries fail their MAC and were not chained "
                "(run `archive-vault audit verify`)",
                len(done.refused),
            )
        if done.replayed:
            log.error(
                "audit queue: %d queued entries are copies of entries already chained and "
                "were not chained again (run `archive-vault audit verify`)",
                len(done.replayed),
            )
        return done

    def committed(self, count: int = 1) -> None:
        """Tell the log that ``count`` appends made on a bare transaction were committed.

        Sessions report this by themselves; callers appending on a raw
        transaction (the hot read path) call it after their commit so
        count-based checkpoints run.
        """
        self._cadence.committed(count)

    def head(self) -> int:
        """The newest seq (0 for an empty log), every committed entry integrated."""
        self.integrate()
        with self.engine.connect() as conn:
            return head_of(conn)

    # -- checkpoints ------------------------------------------------------------

    def latest_checkpoint(self) -> SignedCheckpoint | None:
        """The newest checkpoint row that is this log's and agrees with its note."""
        return self._signer.latest()

    def checkpoint(self, now: datetime | None = None) -> SignedCheckpoint | None:
        """Sign a checkpoint of the current tree if it grew; None when there is nothing new.

        Raises AuditIntegrityError, and signs nothing, when the stored entries
        no longer extend the last signed checkpoint (edited, removed, truncated).
        """
        self.integrate()
        return self._signer.sign(now or self._clock())

    def checkpoint_if_new(self) -> SignedCheckpoint | None:
        """Sign if anything was appended since the last checkpoint (end of CLI commands, shutdown).

        Without this a quiet vault would leave its newest entries unsigned, and a
        truncated tail would go unnoticed until the next busy period.
        """
        return self.checkpoint()

    def checkpoint_if_due(self, now: datetime | None = None) -> SignedCheckpoint | None:
        """Sign when N entries or T seconds have accumulated since the last checkpoint.

        Integrates first: the minute's sweep also chains what a worker that died
        before its signer's tick left queued.
        """
        return self._cadence.checkpoint_if_due(now)

    def sign_pending(self) -> SignedCheckpoint | None:
        """Sequence, then sign if this process committed entries since the last call.

        The service's signer calls this every half ``audit_checkpoint_delay_seconds``:
        it is what keeps the queue short on PostgreSQL.
        """
        return self._cadence.sign_pending()

    # -- proofs, verification, export --------------------------------------------

    def inclusion_proof(self, seq: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 inclusion proof of entry ``seq`` in tree ``size`` (default: newest signed)."""
        self.integrate()
        return self._proofs.inclusion(seq, size)

    def inclusion_proofs(self, seqs: Sequence[int], size: int) -> dict[int, list[bytes]]:
        """Proofs of several entries in tree ``size``, the tree recomputed once for all."""
        self.integrate()
        return self._proofs.inclusion_many(seqs, size)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """RFC 9162 consistency proof between two tree sizes (default: to the newest checkpoint)."""
        self.integrate()
        return self._proofs.consistency(size1, size2)

    def verify(
        self, progress: Callable[[int, int], None] | None = None, *, workers: int | None = 1
    ) -> Report:
        """Re-verify the whole stored log (see ``audit.verify_db``).

        One process by default: the service calls this from a threaded server, which
        must not fork. The command line passes ``workers=None`` (one per core).

        Entries still queued (``audit.queue``) are covered by their MACs: one
        that fails, a copy of an entry chained or queued before it, or one waiting
        longer than ``audit_queue_alarm_seconds`` (the sequencer has stopped), is
        a problem. Verification never sequences.
        """
        mac = self.entry_mac()
        report = verify_database(
            self.engine,
            public_key=self.public_key,
            origin=self.origin,
            progress=progress,
            mac=mac,
            workers=workers,
        )
        state = inspect_queue(self.engine, mac)
        found: list[Problem] = []
        if state.forged:
            ids = ", ".join(str(i) for i in state.forged_ids)
            found.append(
                Problem(
                    "forged",
                    f"{state.forged} queued entries fail their MAC (queue ids {ids}): "
                    "written or edited without the key file, never chained",
                )
            )
        if state.replayed:
            ids = ", ".join(str(i) for i in state.replayed_ids)
            found.append(
                Problem(
                    "replayed",
                    f"{state.replayed} queued entries are copies of entries chained or queued "
                    f"before them (queue ids {ids}): admitted again by someone with the "
                    "database role, never chained twice",
                )
            )
        alarm = float(
            getattr(self.settings, "audit_queue_alarm_seconds", DEFAULT_QUEUE_ALARM_SECONDS)
        )
        if state.oldest is not None:
            age = (self._clock() - state.oldest).total_seconds()
            if age > alarm:
                found.append(
                    Problem(
                        "stalled",
                        f"a queued entry has waited {age:.0f} s to be chained (more than "
                        f"{alarm:.0f} s): is any service or command sequencing the log?",
                    )
                )
        if state.waiting:
            report.notes.append(
                f"{state.waiting - state.forged - state.replayed} entries queued, "
                "not yet chained; their MACs hold"
            )
        if found:
            report.problems = [*report.all_problems(), *found]
            report.problem = report.problem or found[0]
            report.ok = False
        return report

    def export_bundle(self, out: TextIO, *, prove: Sequence[int] = ()) -> dict[str, int]:
        """Write an offline-verifiable bundle to a text stream (see ``audit.bundle``)."""
        self.integrate()
        return export_bundle(
            self.engine, out, origin=self.origin, public_key=self.public_key, prove=prove
        )

    # -- compliance queries -------------------------------------------------------

    def entries_by_account(
        self, account: str, since: datetime, until: datetime, *, upto: int, limit: int
    ) -> list[tuple[Any, ...]]:
        """Rows of every entry ``account`` wrote in [since, until), seq <= ``upto``."""
        self.integrate()
        with self.engine.connect() as conn:
            return evidence.by_account(conn, account, since, until, upto, limit)

    def entries_by_seq(self, seqs: Sequence[int]) -> list[tuple[Any, ...]]:
        """Rows of the given entries as stored (``ENTRY_COLUMNS``), in seq order."""
        self.integrate()
        with self.engine.connect() as conn:
            return evidence.by_seqs(conn, seqs)

    def entries_by_archives(
        self,
        archives: Sequence[str],
        since: datetime,
        until: datetime,
        *,
        upto: int,
        limit: int,
        actions: Sequence[str] = (),
    ) -> list[tuple[Any, ...]]:
        """Rows of every entry naming one of ``archives`` in [since, until), seq <= ``upto``."""
        self.integrate()
        with self.engine.connect() as conn:
            return evidence.by_archives(conn, archives, since, until, upto, limit, actions)

    def query(
        self,
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
        self.integrate()
        return query(
            self.engine,
            actor=actor,
            archive=archive,
            action=action,
            since=since,
            until=until,
            outcome=outcome,
            limit=limit,
            offset=offset,
            newest_first=newest_first,
        )
