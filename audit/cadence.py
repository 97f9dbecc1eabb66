"""When to sign: soon after any commit that appended, and every N entries or T seconds.

The service signs a checkpoint at most ``audit_checkpoint_delay_seconds``
(default 1 s) after any commit that appended entries (``sign_pending``, driven
by the API's lifespan task), CLI commands sign at their end, and after a
commit the log also signs when N entries or T seconds have passed since the
last checkpoint (settings ``audit_checkpoint_every_entries`` /
``audit_checkpoint_every_seconds``).

The in-process counter (``_Gate``) is shared by every log on one engine (the
vault builds one per store), so "every N entries" counts this process's
appends, not one instance's. It only saves queries: ``checkpoint_if_due``
decides from the database itself.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.engine import Engine

from audit.checkpoint import SignedCheckpoint
from audit.errors import AuditIntegrityError
from audit.locks import head_of
from audit.signer import CheckpointSigner

log = logging.getLogger(__name__)

DEFAULT_EVERY_ENTRIES = 1000
DEFAULT_EVERY_SECONDS = 300.0


class _Gate:
    """Per-engine, in-process counter that decides when to ask the database about checkpoints."""

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
            now = time.monotonic()
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


class SigningCadence:
    """Decides when the signer runs; never lets a signing failure undo a caller's commit."""

    def __init__(
        self,
        engine: Engine,
        signer: CheckpointSigner,
        clock: Callable[[], datetime],
        *,
        every_entries: int = DEFAULT_EVERY_ENTRIES,
        every_seconds: float = DEFAULT_EVERY_SECONDS,
        prepare: Callable[..., object] | None = None,
    ) -> None:
        self._engine = engine
        # Run before every signing: the log's sequencer, so a checkpoint covers
        # the entries still queued when it was due (``audit.queue``). Called with
        # ``wait=False`` after a commit: it then reports ``busy`` instead of waiting.
        self._prepare = prepare
        self._signer = signer
        self._clock = clock
        self.every_entries = every_entries
        self.every_seconds = every_seconds
        self._gate = _gate_for(engine)

    def committed(self, count: int = 1) -> None:
        """``count`` appends were committed: sign now if N entries or T seconds have passed."""
        if not count:
            return
        self._gate.mark()
        if not self._gate.due(count, self.every_entries, self.every_seconds):
            return
        try:
            self.checkpoint_if_due(wait=False)
        except AuditIntegrityError as exc:  # content-free: names the entry, needs no traceback
            log.error("audit checkpoint refused: %s", exc)
        except Exception:  # the caller's commit already succeeded; never undo it from here
            log.exception("audit checkpoint after commit failed")

    def checkpoint_if_due(
        self, now: datetime | None = None, *, wait: bool = True
    ) -> SignedCheckpoint | None:
        """Sign when N entries or T seconds have accumulated since the last checkpoint.

        ``wait=False`` (after a commit, in a request's thread): if another process
        is sequencing or signing, it is doing this very work; return instead of
        holding the request up behind it. The entries stay pending for the
        service's signer tick, which waits.
        """
        now = now or self._clock()
        if self._prepare is not None:
            done = self._prepare(wait=wait)
            if getattr(done, "busy", False):
                return None
        with self._engine.connect() as conn:
            newest = self._signer.newest_valid(conn)
            size = head_of(conn)
        last = None if newest is None else newest.checkpoint
        signed = 0 if last is None else last.size
        if size <= signed:
            return None
        if last is not None and size - signed < self.every_entries:
            age = now.timestamp() - last.timestamp  # the signed time, not a row's column
            if age < self.every_seconds:
                return None
        return self._signer.sign(now, wait=wait)

    def sign_pending(self) -> SignedCheckpoint | None:
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
            if self._prepare is not None:
                self._prepare()
            return self._signer.sign(self._clock())
        except AuditIntegrityError:
            raise
        except Exception:
            self._gate.mark()
            raise
