"""Prometheus metrics of the service: counted per worker, summed at scrape time.

Labels carry route templates (``/customers/{archive_no}``), methods, status
codes and decision outcomes only: never a raw path (archive numbers are in
paths), a query string, a username or any customer value. What is counted in
memory is counted here; what the database knows (the audit queue, the last
signed checkpoint, active grants, loans out) is read at scrape time with a few
indexed queries, so every worker reports the same numbers.

Under ``serve`` the counters live in files of ``PROMETHEUS_MULTIPROC_DIR``
(prometheus-client's multiprocess mode, set up by ``api.supervisor``), so a
scrape answered by any worker sums all of them. Without it (tests, one
process) they live in this process's registry.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import sqlalchemy as sa
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from audit.models import checkpoint_table, queue_table
from policies.decision import Decision, Principal
from policies.engine import PolicyEngine
from policies.models import AccessGrant, LoanEntry
from policies.roles import Action, GrantState, LoanState
from vault.meta import ArchiveMeta

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "<unmatched>"  # the route label of a path no route answers: never the path
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter(
    "vault_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
DURATION = Histogram(
    "vault_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
IN_PROGRESS = Gauge(
    "vault_http_requests_in_progress",
    "HTTP requests being answered now (live workers only).",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
DECISIONS = Counter(
    "vault_policy_decisions",
    "Policy decisions, by outcome (allow or deny).",
    ["outcome"],
    registry=REGISTRY,
)
LOGIN_FAILURES = Counter(
    "vault_login_failures",
    "Failed sign-ins (wrong password, unknown name, locked or disabled account).",
    registry=REGISTRY,
)


def method_label(method: str) -> str:
    return method if method in METHODS else "OTHER"


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    m = method_label(method)
    REQUESTS.labels(m, route, str(status)).inc()
    DURATION.labels(m, route).observe(seconds)


class CountingPolicyEngine(PolicyEngine):
    """The policy engine, counting each decision's outcome (allow or deny) as it returns."""

    def decide(
        self,
        principal: Principal,
        action: Action | str,
        archive: ArchiveMeta | None = None,
        groups: Sequence[str] = (),
        *,
        now: datetime,
    ) -> Decision:
        decision = super().decide(principal, action, archive, groups, now=now)
        DECISIONS.labels("allow" if decision.allowed else "deny").inc()
        return decision


_GRANT = AccessGrant.__table__  # type: ignore[attr-defined]
_LOAN = LoanEntry.__table__  # type: ignore[attr-defined]


class DatabaseGauges(Collector):
    """Gauges read from the database when scraped; ``vault_database_up`` 0 if it fails."""

    def __init__(self, engine: sa.Engine, clock: Callable[[], datetime]) -> None:
        self.engine, self.clock = engine, clock

    def collect(self) -> Iterable[Metric]:
        now = self.clock()
        try:
            with self.engine.connect() as conn:
                queued = conn.execute(sa.select(sa.func.count()).select_from(queue_table))
                queue_depth = int(queued.scalar_one())
                signed = conn.execute(
                    sa.select(checkpoint_table.c.signed_at)
                    .order_by(checkpoint_table.c.tree_size.desc())
                    .limit(1)
                ).scalar()
                grants = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(_GRANT)
                    .where(_GRANT.c.state == GrantState.ACTIVE.value, _GRANT.c.not_after > now)
                ).scalar_one()
                loans = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(_LOAN)
                    .where(_LOAN.c.state == LoanState.OUT.value)
                ).scalar_one()
        except Exception:  # noqa: BLE001 - a scrape reports the database down, never raises
            yield GaugeMetricFamily("vault_database_up", "Whether the database answered.", 0)
            return
        yield GaugeMetricFamily("vault_database_up", "Whether the database answered.", 1)
        yield GaugeMetricFamily(
            "vault_audit_queue_depth",
            "Audit entries committed and waiting for their place in the chain (PostgreSQL).",
            queue_depth,
        )
        since = _seconds_since(signed, now)
        if since is not None:
            yield GaugeMetricFamily(
                "vault_audit_seconds_since_checkpoint",
                "Seconds since the newest signed audit checkpoint.",
                since,
            )
        yield GaugeMetricFamily("vault_grants_active", "Access grants active now.", int(grants))
        yield GaugeMetricFamily("vault_loans_out", "Paper archives on loan now.", int(loans))


def _seconds_since(signed_at: str | None, now: datetime) -> float | None:
    if not signed_at:
        return None
    try:
        moment = datetime.fromisoformat(signed_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (now - moment).total_seconds())


class _Local(Collector):
    """This process's counters (no multiprocess directory: one process, or tests)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def render(engine: sa.Engine, clock: Callable[[], datetime]) -> bytes:
    """The exposition text: every worker's counters, then the database's gauges."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Local())
    registry.register(DatabaseGauges(engine, clock))
    return generate_latest(registry)
