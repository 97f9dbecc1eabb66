"""Readiness: whether this worker can do real work now, not only whether it is alive.

``/healthz`` says the process answers and the database and audit table answer.
``/readyz`` says what a read needs: the database answers; the active KEK of
every classification seals and opens a probe value; every KEK version the
stored archives are wrapped by is in the key file (``vault.key_health``, the
check ``keys status`` makes); and an audit entry can be appended (fail-closed:
no audit, no service).

The deep checks (the archive table's key versions, and the append of a
``health:ready`` entry) run at most once per ``DEEP_EVERY`` seconds per worker
and only one at a time: a probe every few seconds from a load balancer would
otherwise fill the audit log with probe entries, and an unauthenticated caller
must not be able to make writers queue behind the audit log's lock. Between
deep checks a probe checks the database and the KEKs, and reuses the last deep
check's success; a failed deep check is never reused, the next probe runs it
again. The answer names a short, content-free reason and nothing else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlmodel import Session

from api.services import Services, health
from audit.events import Actor, AuditAction, AuditEvent
from foundation.db import transaction
from vault.key_health import active_keks_work, unopenable
from vault.rotation import kek_counts

DEEP_EVERY = 60.0  # seconds between a worker's key-version checks and probe audit entries
KEYS_EVERY = 5.0  # seconds a worker reuses a successful round trip through every active KEK
PROBE_ACTOR = Actor("system", "readiness")


@dataclass
class Readiness:
    """One per app: remembers when its last deep check succeeded."""

    every: float = DEEP_EVERY
    monotonic: Callable[[], float] = time.monotonic
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _deep_ok_at: float | None = None
    _keys_ok_at: float | None = None
    _last: str | None = "starting"  # what a probe answers while another one checks

    def check(self, services: Services) -> str | None:
        """None when ready, else a short reason that names no value, version or entry.

        Probes never queue: while one probe checks the keys (a round trip through an
        HSM, with one) or runs the deep checks, the others get its predecessor's
        answer at once, so a flood of unauthenticated probes cannot hold the
        worker's threads or the token. A success of the key round trip is reused
        for ``KEYS_EVERY`` seconds; a failure never is.
        """
        if not health(services.engine):
            return "database unavailable"
        if not self._lock.acquire(blocking=False):
            return self._last
        try:
            now = self.monotonic()
            if self._keys_ok_at is None or now - self._keys_ok_at >= KEYS_EVERY:
                if not active_keks_work(services.vault.keys):
                    self._keys_ok_at, self._last = None, "keys unavailable"
                    return self._last
                self._keys_ok_at = now
            if self._deep_ok_at is None or now - self._deep_ok_at >= self.every:
                reason = self._deep(services)
                self._deep_ok_at = now if reason is None else None
            else:
                reason = None
            self._last = reason
            return reason
        finally:
            self._lock.release()

    @staticmethod
    def _deep(services: Services) -> str | None:
        try:
            with Session(services.engine) as session:
                counts = kek_counts(session)
        except Exception:  # noqa: BLE001 - any failure is "not ready"; no internals shown
            return "database unavailable"
        if unopenable(counts, services.vault.keys):
            return "key file does not match the database"
        try:
            with transaction(services.engine) as session:
                services.audit.append(
                    session, AuditEvent(action=AuditAction.READY, actor=PROBE_ACTOR)
                )
        except Exception:  # noqa: BLE001 - fail closed: a vault that cannot audit is not ready
            return "audit log unavailable"
        return None
