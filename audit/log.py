"""The audit log service: append inside the caller's transaction, sign checkpoints, query.

Fail-closed by construction: ``append`` writes into the caller's open
transaction and never commits. The caller commits only after it has the entry,
and releases plaintext only after the commit, so an append that raises means
the read never happened as far as anyone outside the process can tell.

One linear chain under concurrent writers:

* PostgreSQL: ``pg_advisory_xact_lock`` (keyed by the current schema) is taken
  before the head is read and held until the caller's transaction ends, so the
  next writer reads a committed head. ``seq`` is the primary key, so if the
  lock were ever bypassed a fork would fail on the key instead of committing.
  Call ``append`` late in the transaction: it serialises everything after it.
* SQLite: if the connection has not written yet, ``BEGIN IMMEDIATE`` takes the
  write lock *before* the head is read. A deferred transaction that read first
  and wrote later would fail on the lock upgrade under contention; waiting at
  ``BEGIN`` (busy_timeout) never fails that way.

Every entry carries a MAC under the key file's audit MAC key (``audit.mac``),
so an entry written or rewritten by anyone without the key file (the
application's own database role included) is named by ``verify``.

Checkpoints: the service signs one at most ``audit_checkpoint_delay_seconds``
(default 1 s) after any commit that appended entries (``sign_pending``, driven
by the API's lifespan task), CLI commands sign at their end, and after a
commit the log also signs when N entries or T seconds have passed since the
last one (settings ``audit_checkpoint_every_entries`` /
``audit_checkpoint_every_seconds``). A checkpoint extends the newest *valid*
signed tree from its stored frontier, which is first checked against that
signed root, and re-hashes (and checks the MACs of) only the new entries, so
it costs O(new entries), and it never signs a tree that does not extend the
newest valid checkpoint or that holds an entry whose MAC fails.

Checkpoint rows are not trusted because they are in the table: anyone who may
INSERT can add one. Each row's note is verified against the log's key and its
columns against the note; a row that fails is skipped (``verify`` reports it),
so a junk row is never taken as the latest and cannot stop the log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time as _time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from audit.checkpoint import (
    CheckpointError,
    SignedCheckpoint,
    open_checkpoint,
    public_key_pem,
    sign_checkpoint,
    verifier_key,
)
from audit.codec import (
    ENTRY_COLUMNS,
    canonical_for_columns,
    canonical_from_row,
    event_fields,
    format_time,
    parse_time,
)
from audit.errors import AuditIntegrityError, AuditQueryError, AuditWriteFailed
from audit.events import AuditAction, AuditEvent, Outcome
from audit.mac import EntryMac
from audit.merkle import ZERO_HASH, CompactRange, MerkleTree, ProofError, leaf_hash
from audit.models import checkpoint_table, entry_table
from audit.schema import PG_HEAD_FUNCTION
from audit.verify import Report
from foundation.rawsql import Raw, dbapi_of, raw_sql

log = logging.getLogger(__name__)

Checkpoint = SignedCheckpoint

# pg_advisory_xact_lock(int, int): first key names the lock, second the schema.
_APPEND_LOCK = 0x41554454  # "AUDT"
_CHECKPOINT_LOCK = 0x41554443  # "AUDC"
_PENDING = "audit_log_pending"
_HOOKED = "audit_log_hooked"
DEFAULT_EVERY_ENTRIES = 1000
DEFAULT_EVERY_SECONDS = 300.0
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


def _dialect_of(handle: Any) -> str:
    """The dialect behind a Session, Connection or raw transaction (see foundation.rawsql)."""
    return dbapi_of(handle)[1].name


def _lock(handle: Any, key: int) -> None:
    """Serialise writers of the chain (see the module docstring for why each form)."""
    dialect = _dialect_of(handle)
    if dialect == "postgresql":
        _PG_XACT_LOCK.first(handle, {"k": key})
    elif dialect == "sqlite":
        dbapi, _ = dbapi_of(handle)
        if not dbapi.in_transaction:
            raw_sql(handle, "BEGIN IMMEDIATE")


def _lock_and_read_head(handle: Any) -> Any:
    """Take the append lock and read the chain's head (raw DBAPI: this runs on every read)."""
    if _dialect_of(handle) == "postgresql":
        return _PG_LOCK_HEAD_RAW.first(handle, {"k": _APPEND_LOCK})  # lock and head in one
    _lock(handle, _APPEND_LOCK)
    return _HEAD_RAW.first(handle)


_PG_XACT_LOCK = Raw(sa.text("SELECT pg_advisory_xact_lock(:k, hashtext(current_schema()))"))
_PG_LOCK_HEAD = sa.text(f"SELECT head_seq, head_hash FROM {PG_HEAD_FUNCTION}(:k)")  # noqa: S608 - constant name
_HEAD = (
    sa.select(entry_table.c.seq, entry_table.c.entry_hash)
    .order_by(entry_table.c.seq.desc())
    .limit(1)
)
_INSERT = entry_table.insert()
_PG_LOCK_HEAD_RAW = Raw(_PG_LOCK_HEAD)
_HEAD_RAW = Raw(_HEAD)
_INSERT_RAW = Raw(_INSERT, column_keys=[c.key for c in entry_table.columns])
_CHECKPOINTS_DESC = sa.select(checkpoint_table).order_by(checkpoint_table.c.tree_size.desc())
_ROWS_WITH_MAC = (*ENTRY_COLUMNS, entry_table.c.mac)
_NOTE_CACHE_LIMIT = 10_000


def note_hash(note: str) -> bytes:
    """The key of a checkpoint row: SHA-256 of its note (see ``audit.models``)."""
    return hashlib.sha256(note.encode("utf-8", "surrogatepass")).digest()


def locked_head(handle: Any) -> int:
    """Take the append lock in the caller's transaction and return the head seq.

    Held until that transaction ends; the key file gains its audit MAC key
    under it, so no append can fall between the head read and the new key.
    """
    head = _lock_and_read_head(handle)
    return 0 if head is None else int(head[0])


class _Gate:
    """Per-engine, in-process counter that decides when to ask the database about checkpoints.

    Shared by every AuditLog on the same engine (the vault builds one per store),
    so "every N entries" counts this process's appends, not one instance's. It
    only saves queries: ``checkpoint_if_due`` decides from the database itself.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._count = 0
        self._last = float("-inf")  # the first commit in a process always checks
        self._pending = False

    def mark(self) -> None:
        """Entries were committed: the service's signer signs them on its next tick."""
        self._pending = True

    def take_pending(self) -> bool:
        with self._mutex:
            pending, self._pending = self._pending, False
            return pending

    def due(self, committed: int, every_entries: int, every_seconds: float) -> bool:
        with self._mutex:
            self._count += committed
            now = _time.monotonic()
            if self._count < every_entries and now - self._last < every_seconds:
                return False
            self._count, self._last = 0, now
            return True


_GATES: weakref.WeakKeyDictionary[Engine, _Gate] = weakref.WeakKeyDictionary()
_GATES_MUTEX = threading.Lock()


def _gate_for(engine: Engine) -> _Gate:
    with _GATES_MUTEX:
        gate = _GATES.get(engine)
        if gate is None:
            gate = _GATES[engine] = _Gate()
        return gate


class AuditLog:
    """The append-only, tamper-evident audit log of one vault (see the module docstring)."""

    def __init__(
        self,
        *,
        engine: Engine,
        keys: Any,
        settings: Any,
        clock: Callable[[], datetime] | None = None,
        auto_checkpoint: bool = True,
    ) -> None:
        self.engine = engine
        self.keys = keys
        self.settings = settings
        self._clock = clock or (lambda: datetime.now(UTC))
        self.auto_checkpoint = auto_checkpoint
        self.every_entries = int(
            getattr(settings, "audit_checkpoint_every_entries", DEFAULT_EVERY_ENTRIES)
        )
        self.every_seconds = float(
            getattr(settings, "audit_checkpoint_every_seconds", DEFAULT_EVERY_SECONDS)
        )
        self.origin = str(
            getattr(settings, "audit_origin", None) or f"archive-vault/audit/{keys.vault_id}"
        )
        self._signing_key: Ed25519PrivateKey | None = None
        self._entry_mac: EntryMac | None = None
        self._notes: dict[bytes, SignedCheckpoint | None] = {}
        self._gate = _gate_for(engine)

    # -- keys ---------------------------------------------------------------

    def _private_key(self) -> Ed25519PrivateKey:
        if self._signing_key is None:
            self._signing_key = self.keys.audit_signing_key()
        return self._signing_key

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._private_key().public_key()

    def public_key_pem(self) -> str:
        """The PEM public key auditors pin (``python -m audit.verify --pubkey``)."""
        return public_key_pem(self.public_key)

    def verifier_key(self) -> str:
        """The same key as a signed-note verifier key, for Go transparency-log tooling."""
        return verifier_key(self.origin, self.public_key)

    def entry_mac(self) -> EntryMac | None:
        """The MAC under the key file's audit MAC key; None for a provider without one."""
        if self._entry_mac is None:
            get = getattr(self.keys, "audit_mac_key", None)
            key = get() if get is not None else None
            if key is not None:
                self._entry_mac = EntryMac(key)
        return self._entry_mac

    # -- append -------------------------------------------------------------

    def append(self, session: Any, event: AuditEvent) -> int:
        """Append one entry in the caller's open transaction; returns its seq. Never commits.

        Raises AuditWriteFailed for an invalid event or a database failure; the
        caller must then roll back and release nothing.
        """
        columns = event_fields(event)
        try:
            head = _lock_and_read_head(session)
            seq = 1 if head is None else int(head[0]) + 1
            prev = ZERO_HASH if head is None else bytes(head[1])
            columns["seq"] = seq
            columns["time"] = format_time(self._clock())  # stamped under the lock: monotone
            columns["prev_hash"] = prev
            columns["entry_hash"] = leaf = leaf_hash(canonical_for_columns(columns))
            mac = self.entry_mac()  # asked under the lock: see Keyring.audit_mac_key
            columns["mac"] = None if mac is None else mac.compute(seq, prev, leaf)
            _INSERT_RAW.execute(session, columns)
        except AuditWriteFailed:
            raise
        except SQLAlchemyError as exc:
            raise AuditWriteFailed(
                f"audit entry could not be written ({type(exc.orig or exc).__name__})"
            ) from exc
        except Exception as exc:  # the key file could not give the MAC key: write nothing
            raise AuditWriteFailed(
                f"audit entry could not be written: no audit MAC key ({type(exc).__name__})"
            ) from exc
        if isinstance(session, Session):
            self._track(session)
        return seq

    def _track(self, session: Session) -> None:
        session.info[_PENDING] = session.info.get(_PENDING, 0) + 1
        if self.auto_checkpoint and not session.info.get(_HOOKED):
            session.info[_HOOKED] = True
            sa.event.listen(session, "after_commit", self._after_commit)
            sa.event.listen(session, "after_rollback", self._after_rollback)

    def _after_rollback(self, session: Session) -> None:
        session.info.pop(_PENDING, None)

    def _after_commit(self, session: Session) -> None:
        self.committed(session.info.pop(_PENDING, 0))

    def committed(self, count: int = 1) -> None:
        """Tell the log that ``count`` appends made on a bare Connection were committed.

        Sessions report this by themselves; callers appending on a Connection (the
        hot read path) call it after their commit so count-based checkpoints run.
        """
        committed = count
        if not committed:
            return
        self._gate.mark()
        if not self._gate.due(committed, self.every_entries, self.every_seconds):
            return
        try:
            self.checkpoint_if_due()
        except AuditIntegrityError as exc:  # content-free: names the entry, needs no traceback
            log.error("audit checkpoint refused: %s", exc)
        except Exception:  # the caller's commit already succeeded; never undo it from here
            log.exception("audit checkpoint after commit failed")

    # -- checkpoints ----------------------------------------------------------

    def latest_checkpoint(self) -> Checkpoint | None:
        """The newest checkpoint row that is this log's and agrees with its note."""
        with self.engine.connect() as conn:
            newest = self._newest_valid(conn)
        return None if newest is None else newest[0]

    def _valid(self, row: Any) -> Checkpoint | None:
        """The row's checkpoint when its note verifies and its columns agree; else None.

        Verdicts on notes are remembered (a note's validity never changes), so
        junk rows cost one signature check per process, not one per checkpoint.
        """
        note = row.note
        if not isinstance(note, str):
            return None
        digest = note_hash(note)
        if digest in self._notes:
            cp = self._notes[digest]
        else:
            try:
                cp = open_checkpoint(note, self.public_key, self.origin)
            except (CheckpointError, ValueError, TypeError):
                cp = None
            if len(self._notes) >= _NOTE_CACHE_LIMIT:
                self._notes.clear()
            self._notes[digest] = cp
        if cp is None or cp.size != row.tree_size:
            return None
        if not hmac.compare_digest(cp.root, bytes(row.root_hash or b"")):
            return None
        return cp

    def _newest_valid(self, conn: Connection) -> tuple[Checkpoint, list[Any]] | None:
        """The newest valid checkpoint and every row that carries it (invalid rows skipped)."""
        best: Checkpoint | None = None
        rows: list[Any] = []
        result = conn.execute(_CHECKPOINTS_DESC.execution_options(yield_per=256))
        try:
            for row in result:
                if best is not None and row.tree_size < best.size:
                    break
                cp = self._valid(row)
                if cp is None:
                    continue
                if best is None:
                    best = cp
                if cp.root == best.root:
                    rows.append(row)
        finally:
            result.close()
        return None if best is None else (best, rows)

    def head(self) -> int:
        with self.engine.connect() as conn:
            row = conn.execute(_HEAD).first()
        return 0 if row is None else int(row[0])

    def checkpoint_if_due(self, now: datetime | None = None) -> Checkpoint | None:
        """Sign when N entries or T seconds have accumulated since the last checkpoint."""
        now = now or self._clock()
        with self.engine.connect() as conn:
            newest = self._newest_valid(conn)
            head = conn.execute(_HEAD).first()
        last = None if newest is None else newest[0]
        size = 0 if head is None else int(head[0])
        signed = 0 if last is None else last.size
        if size <= signed:
            return None
        if last is not None and size - signed < self.every_entries:
            age = now.timestamp() - last.timestamp  # the signed time, not a row's column
            if age < self.every_seconds:
                return None
        return self.checkpoint(now)

    def sign_pending(self) -> Checkpoint | None:
        """Sign if this process committed entries since the last call (the service's signer).

        The service calls this every fraction of ``audit_checkpoint_delay_seconds``,
        so an entry is covered by a signature about a second after its commit and a
        cut tail is caught by the checkpoint. A passing failure (database busy)
        leaves the entries pending for the next call; an integrity failure does
        not, so one forged entry is reported once per tick of the slow sweep
        rather than every fraction of a second.
        """
        if not self._gate.take_pending():
            return None
        try:
            return self.checkpoint()
        except AuditIntegrityError:
            raise
        except Exception:
            self._gate.mark()
            raise

    def checkpoint_if_new(self) -> Checkpoint | None:
        """Sign if anything was appended since the last checkpoint (end of CLI commands, shutdown).

        Without this a quiet vault would leave its newest entries unsigned, and a
        truncated tail would go unnoticed until the next busy period.
        """
        return self.checkpoint()

    def checkpoint(self, now: datetime | None = None) -> Checkpoint | None:
        """Sign a checkpoint of the current tree if it grew; None when there is nothing new.

        Raises AuditIntegrityError, and signs nothing, when the stored entries
        no longer extend the last signed checkpoint (edited, removed, truncated).
        """
        now = now or self._clock()
        with Session(self.engine) as session:
            conn = session.connection()
            _lock(conn, _CHECKPOINT_LOCK)
            newest = self._newest_valid(conn)
            head_row = conn.execute(_HEAD).first()
            head = 0 if head_row is None else int(head_row[0])
            rng, prev_leaf = self._extendable_range(conn, newest)
            if head < rng.size:
                raise AuditIntegrityError(
                    f"the log holds {head} entries but a checkpoint signed {rng.size}: "
                    "its tail was removed",
                    seq=head + 1,
                )
            if head == rng.size:
                return None
            mac = self.entry_mac()
            for seq, leaf in self._rehash(conn, rng.size + 1, head, prev_leaf, mac=mac):
                rng.append(leaf)
                if seq != rng.size:  # pragma: no cover - _rehash enforces contiguity
                    raise AuditIntegrityError("audit sequence broke while checkpointing", seq)
            timestamp = int(now.timestamp())
            cp = sign_checkpoint(self._private_key(), self.origin, rng.size, rng.root(), timestamp)
            try:
                conn.execute(
                    checkpoint_table.insert(),
                    {
                        "note_hash": note_hash(cp.note),
                        "tree_size": cp.size,
                        "root_hash": cp.root,
                        "signed_at": format_time(now),
                        "note": cp.note,
                        "frontier": json.dumps([h.hex() for h in rng.hashes]),
                    },
                )
                session.commit()
            except IntegrityError:
                session.rollback()
                return None  # this very note is stored already
        return cp

    def _extendable_range(
        self, conn: Connection, newest: tuple[Checkpoint, list[Any]] | None
    ) -> tuple[CompactRange, bytes]:
        """The compact range of the newest valid signed tree, proven against its signed root."""
        if newest is None:
            return CompactRange(), ZERO_HASH
        cp, rows = newest
        rng: CompactRange | None = None
        for row in rows:  # a copy of the note with a damaged frontier is tried, then passed over
            try:
                hashes = [bytes.fromhex(h) for h in json.loads(row.frontier)]
                candidate = CompactRange(cp.size, hashes)
                if candidate.root() == cp.root:
                    rng = candidate
                    break
            except (ValueError, TypeError, ProofError):
                continue
        if rng is None:  # the stored frontier is damaged: rebuild it from the entries
            rng = CompactRange()
            for _seq, leaf in self._rehash(conn, 1, cp.size, ZERO_HASH):
                rng.append(leaf)
            if rng.size != cp.size or rng.root() != cp.root:
                raise AuditIntegrityError(
                    f"entries 1..{cp.size} no longer reproduce the signed checkpoint of size "
                    f"{cp.size}; refusing to sign over them (run `archive-vault audit verify`)"
                )
        last_row = conn.execute(
            sa.select(*ENTRY_COLUMNS).where(entry_table.c.seq == cp.size)
        ).first()
        if last_row is None:
            raise AuditIntegrityError(
                f"entry {cp.size}, covered by a signed checkpoint, is missing", seq=cp.size
            )
        return rng, leaf_hash(canonical_from_row(tuple(last_row)))

    def _rehash(
        self,
        conn: Connection,
        first: int,
        last: int,
        prev_leaf: bytes,
        *,
        mac: EntryMac | None = None,
    ) -> Iterator[tuple[int, bytes]]:
        """Recompute leaves first..last from content, checking sequence and chain as it goes.

        With ``mac``, every entry that must carry a MAC is checked too: nothing
        is signed over an entry written or rewritten without the MAC key.
        """
        expected = first
        stmt = (
            sa.select(*_ROWS_WITH_MAC)
            .where(entry_table.c.seq >= first, entry_table.c.seq <= last)
            .order_by(entry_table.c.seq)
        )
        for row in conn.execute(stmt.execution_options(yield_per=5000)):
            seq = int(row[0])
            if seq != expected:
                raise AuditIntegrityError(f"audit entry {expected} is missing", seq=expected)
            try:
                leaf = leaf_hash(canonical_from_row(tuple(row)))
            except ValueError:
                raise AuditIntegrityError(f"audit entry {seq} is malformed", seq=seq) from None
            if bytes(row[13]) != prev_leaf:
                raise AuditIntegrityError(
                    f"audit entry {seq} does not link to entry {seq - 1}", seq=seq
                )
            if bytes(row[14]) != leaf:
                raise AuditIntegrityError(
                    f"audit entry {seq} does not match its stored hash", seq=seq
                )
            if (
                mac is not None
                and mac.required(seq)
                and not mac.check(seq, prev_leaf, leaf, row[15])
            ):
                raise AuditIntegrityError(
                    f"audit entry {seq} carries no valid MAC: it was written or altered without "
                    "the vault's audit MAC key; refusing to sign over it "
                    "(run `archive-vault audit verify`)",
                    seq=seq,
                )
            prev_leaf = leaf
            expected += 1
            yield seq, leaf
        if expected != last + 1:
            raise AuditIntegrityError(f"audit entry {expected} is missing", seq=expected)

    # -- proofs -------------------------------------------------------------

    def _tree(self, size: int) -> MerkleTree:
        leaves = [leaf for _seq, leaf in self._stream_leaves(size)]
        if len(leaves) != size:
            raise AuditIntegrityError(f"the log holds fewer than {size} entries")
        return MerkleTree(leaves)

    def _stream_leaves(self, size: int) -> Iterator[tuple[int, bytes]]:
        with self.engine.connect() as conn:
            yield from self._rehash(conn, 1, size, ZERO_HASH)

    def inclusion_proof(self, seq: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 inclusion proof of entry ``seq`` in tree ``size`` (default: newest signed)."""
        size = size or self._signed_size()
        if not 1 <= seq <= size:
            raise AuditQueryError(f"entry {seq} is not in a tree of size {size}")
        return self._tree(size).inclusion_proof(seq - 1, size)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """RFC 9162 consistency proof between two tree sizes (default: to the newest checkpoint)."""
        size2 = size2 or self._signed_size()
        if not 0 <= size1 <= size2:
            raise AuditQueryError(f"no consistency proof from {size1} to {size2}")
        return self._tree(size2).consistency_proof(size1, size2)

    def _signed_size(self) -> int:
        cp = self.latest_checkpoint()
        if cp is None:
            raise AuditQueryError("no checkpoint has been signed yet")
        return cp.size

    # -- verification and export ---------------------------------------------

    def verify(self, progress: Callable[[int, int], None] | None = None) -> Report:
        """Re-verify the whole stored log (see ``audit.verify_db``)."""
        from audit.verify_db import verify_database

        return verify_database(
            self.engine,
            public_key=self.public_key,
            origin=self.origin,
            progress=progress,
            mac=self.entry_mac(),
        )

    def export_bundle(self, out: Any, *, prove: Sequence[int] = ()) -> dict[str, int]:
        """Write an offline-verifiable bundle to a text stream (see ``audit.bundle``)."""
        from audit.bundle import export_bundle

        return export_bundle(
            self.engine, out, origin=self.origin, public_key=self.public_key, prove=prove
        )

    # -- compliance queries ----------------------------------------------------

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
            stmt = stmt.where(t.time >= self._query_time(since))
        if until is not None:
            stmt = stmt.where(t.time < self._query_time(until))
        if archive is not None:
            # archives holds compact JSON, so an element appears exactly as its JSON string.
            token = json.dumps(archive, ensure_ascii=False)
            escaped = token.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            stmt = stmt.where(t.archives.like(f"%{escaped}%", escape="\\"))
        stmt = stmt.order_by(t.seq.desc() if newest_first else t.seq).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [self._record(tuple(r)) for r in rows]

    @staticmethod
    def _query_time(moment: datetime) -> str:
        if moment.tzinfo is None:
            raise AuditQueryError("query times must be timezone-aware")
        return format_time(moment)

    @staticmethod
    def _record(row: tuple[Any, ...]) -> AuditRecord:
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

        def loads(text: str, default: Any) -> Any:
            try:
                return json.loads(text)
            except ValueError:
                return default  # a damaged row still lists; `verify` reports it

        return AuditRecord(
            seq=int(seq),
            time=parse_time(when),
            actor=actor,
            actor_role=role,
            action=action,
            outcome=outcome,
            archives=tuple(loads(archives, [])),
            groups=tuple(loads(groups, [])),
            grant_id=grant_id,
            purpose=purpose,
            reason=reason,
            client=client,
            detail=loads(detail, {}),
            entry_hash=bytes(stored).hex(),
        )
