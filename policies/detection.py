"""The detection sweep: volume, off-hours, secret and departing rules over the audit log.

Why a sweep and not inline counters. These rules count distinct archives per
account per hour and per day, compare a day with the account's own median of
the previous days, and ask whether an account is named by a pending handover:
questions about windows, not about one read. Counting them inline would add
several writes (an upsert per window) to every read, the vault's hot path, and
a counter row per account would be a hot row every one of that account's
reads queues on. The audit log already records every read and export, in
order, committed before any content left; the service's minute housekeeping
(and ``archive-vault detect``) reads the entries appended since the last sweep
and tallies them. An alert is therefore at most about a minute late, and a
read pays nothing for these rules. Decoys are the exception: a decoy is
answered at once, inline (``policies.decoys``); the sweep raises a decoy's
case only if the inline one was lost (same key, so never twice).

How. One transaction per batch: the cursor (``policy_counter``
"detection:seq", the last audit seq swept) is moved on by a conditional UPDATE
from the value read, so of two workers sweeping at once one does the batch and
the other finds the cursor moved and rolls back; the batch's reads and exports
become ``detection_touch`` rows (account, local clock hour, archive: distinct
by key; whether secret; whether any read was outside working hours); then
each rule is evaluated for the windows the batch touched, and a window over
its threshold raises one case (``Alerts.raise_once``: same rule, account and
window, one case). Cases commit with the batch; the handlers are told
afterwards, in a transaction of their own. Accounts on the allow-list get no
volume, off-hours, secret or departing case.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from audit.codec import parse_time
from audit.events import AuditAction, Outcome
from audit.models import entry_table
from foundation.clock import utcnow
from foundation.db import transaction
from policies.decoys import Decoys, hour_window
from policies.detection_cases import Alerts
from policies.detection_models import DetectionTouch
from policies.detection_rules import DetectionRules
from policies.models import AccessRequest, PolicyCounter
from policies.roles import RequestKind, RequestState
from vault.models import Archive

CURSOR = "detection:seq"
BATCH = 20_000
SECRET = ("secret", "top_secret")
_E = entry_table
_T: sa.Table = DetectionTouch.__table__  # type: ignore[attr-defined]
_C: sa.Table = PolicyCounter.__table__  # type: ignore[attr-defined]
_A: sa.Table = Archive.__table__  # type: ignore[attr-defined]
# What counts as reading an archive for the volume rules, and what touches a decoy.
_COUNTED = (AuditAction.READ.value, AuditAction.EXPORT.value)
_DECOY_ACTIONS = (
    *_COUNTED,
    AuditAction.SEARCH.value,
    AuditAction.INTERACTION_READ.value,
    AuditAction.ATTACHMENT_READ.value,
    AuditAction.ATTACHMENT_LIST.value,
)

# How a decoy was touched, by the audit action that records it (as the inline check says).
_HOW = {
    AuditAction.EXPORT.value: "export",
    AuditAction.SEARCH.value: "search",
    AuditAction.INTERACTION_READ.value: "interactions",
    AuditAction.ATTACHMENT_READ.value: "attachment",
    AuditAction.ATTACHMENT_LIST.value: "attachments",
}


@dataclass
class SweepResult:
    """What one sweep did: entries read, tallies written, cases raised (new ones)."""

    entries: int = 0
    touches: int = 0
    cases: list[str] = field(default_factory=list)
    caught_up: bool = True


@dataclass(frozen=True, slots=True)
class _Touch:
    account: str
    hour: str
    day: str
    archive_no: str


def _insert(session: Session, table: sa.Table) -> Any:
    dialect = session.get_bind().dialect.name
    return pg_insert(table) if dialect == "postgresql" else sqlite_insert(table)


class Detector:
    """Sweeps the audit log into tallies and raises the cases the rules call for."""

    def __init__(
        self,
        *,
        engine: Engine,
        alerts: Alerts,
        decoys: Decoys,
        rules: DetectionRules,
        clock: Callable[[], datetime] = utcnow,
        sequence: Callable[[], object] | None = None,
    ) -> None:
        self.engine = engine
        # The log's sequencer (``AuditLog.integrate``): the sweep reads the chain, and
        # on PostgreSQL committed entries wait in the append queue until sequenced.
        self.sequence = sequence
        self.alerts = alerts
        self.decoys = decoys
        self.rules = rules
        self.clock = clock

    def sweep(self, *, batch: int = BATCH, max_batches: int = 50) -> SweepResult:
        """Sweep what the log gained since the last sweep (at most ``max_batches``)."""
        if self.sequence is not None:
            self.sequence()
        total = SweepResult()
        for _ in range(max_batches):
            done, decoy_cases, last = self._batch(batch)
            total.entries += done.entries
            total.touches += done.touches
            total.cases += done.cases
            if done.cases or decoy_cases:
                with transaction(self.engine) as session:
                    now = self.clock()
                    for uid in done.cases:
                        self.alerts.tell(session, uid, now)
                    for number, uid in decoy_cases:
                        self.decoys.tell(session, number, uid, now)
            if last:
                return total
        total.caught_up = False
        return total

    # --- one batch ---------------------------------------------------------------
    def _batch(self, size: int) -> tuple[SweepResult, list[tuple[str, str]], bool]:
        result = SweepResult()
        decoy_cases: list[tuple[str, str]] = []
        with transaction(self.engine) as session:
            conn = session.connection()
            conn.execute(_insert(session, _C).values(name=CURSOR, value=0).on_conflict_do_nothing())
            seen = int(conn.execute(sa.select(_C.c.value).where(_C.c.name == CURSOR)).scalar_one())
            head = int(conn.execute(sa.select(sa.func.max(_E.c.seq))).scalar() or 0)
            upto = min(head, seen + size)
            if upto <= seen:
                return result, decoy_cases, True
            moved = conn.execute(
                sa.update(_C).where(_C.c.name == CURSOR, _C.c.value == seen).values(value=upto)
            )
            if moved.rowcount != 1:  # another worker swept this batch
                return result, decoy_cases, True
            rows = conn.execute(
                sa.select(_E.c.time, _E.c.actor, _E.c.action, _E.c.outcome, _E.c.archives)
                .where(_E.c.seq > seen, _E.c.seq <= upto, _E.c.action.in_(_DECOY_ACTIONS))
                .order_by(_E.c.seq)
            ).all()
            result.entries = len(rows)
            touches, off = self._touches(rows)
            decoys = self.decoys.current(session)
            if decoys:
                decoy_cases = self._decoy_touches(session, rows, decoys)
            result.touches = self._tally(session, touches, off)
            result.cases = self._evaluate(session, touches)
            self._prune(session)
        return result, decoy_cases, upto >= head

    def _touches(self, rows: Iterable[Any]) -> tuple[set[_Touch], set[_Touch]]:
        touches: set[_Touch] = set()
        off: set[_Touch] = set()
        # Local hour, local day and working or not are the same for a whole minute (zone
        # offsets and working hours are whole minutes): worked out once per minute of the
        # batch, not once per entry.
        minutes: dict[str, tuple[str, str, bool]] = {}
        for row in rows:
            if row.action not in _COUNTED or row.outcome != Outcome.ALLOWED.value:
                continue
            if row.actor == "system":
                continue
            minute = minutes.get(row.time[:16])
            if minute is None:
                at = parse_time(row.time)
                local = at.astimezone(self.rules.zone)
                minute = minutes[row.time[:16]] = (
                    local.strftime("%Y-%m-%dT%H"),
                    local.strftime("%Y-%m-%d"),
                    self.rules.working(at),
                )
            hour, day, working = minute
            for number in json.loads(row.archives):
                touch = _Touch(row.actor, hour, day, str(number))
                touches.add(touch)
                if not working:
                    off.add(touch)
        return touches, off

    def _tally(self, session: Session, touches: set[_Touch], off: set[_Touch]) -> int:
        if not touches:
            return 0
        numbers = sorted({t.archive_no for t in touches})
        secret: set[str] = set()
        for i in range(0, len(numbers), 500):
            chunk = numbers[i : i + 500]
            secret |= {
                n
                for (n,) in session.connection().execute(
                    sa.select(_A.c.archive_no).where(
                        _A.c.archive_no.in_(chunk), _A.c.classification.in_(SECRET)
                    )
                )
            }
        ins = _insert(session, _T)
        stmt = ins.on_conflict_do_update(
            index_elements=[_T.c.account, _T.c.hour, _T.c.archive_no],
            set_={"off_hours": sa.or_(_T.c.off_hours, ins.excluded.off_hours)},
        )
        session.connection().execute(
            stmt,
            [
                {
                    "account": t.account[:64],
                    "hour": t.hour,
                    "archive_no": t.archive_no[:32],
                    "day": t.day,
                    "secret": t.archive_no in secret,
                    "off_hours": t in off,
                }
                for t in sorted(touches, key=lambda t: (t.account, t.hour, t.archive_no))
            ],
        )
        return len(touches)

    def _decoy_touches(
        self, session: Session, rows: Iterable[Any], decoys: frozenset[str]
    ) -> list[tuple[str, str]]:
        """Decoy touches in the log whose inline case is missing (same key: never twice)."""
        raised: list[tuple[str, str]] = []
        for row in rows:
            if row.actor == "system":
                continue
            for number in set(json.loads(row.archives)) & decoys:
                at = parse_time(row.time)
                hour, start, end = hour_window(at, self.rules)
                how = _HOW.get(row.action, "read")
                hit = {"decoy": number, "how": how, "outcome": row.outcome, "at": at.isoformat()}
                case, new = self.alerts.raise_once(
                    session,
                    key=f"decoy:{number}:{row.actor}:{hour}",
                    rule="decoy",
                    account=row.actor,
                    archives=[number],
                    facts=hit
                    | {"window": {"from": start.isoformat(), "to": end.isoformat()}, "swept": True},
                    now=self.clock(),
                )
                if new:
                    raised.append((number, case.uid))
        return raised

    # --- the rules ------------------------------------------------------------------
    def _evaluate(self, session: Session, touches: set[_Touch]) -> list[str]:
        windows: dict[str, set[str]] = defaultdict(set)
        for t in touches:
            windows[t.account].add(t.day)
        leavers = self._leavers(session) if windows else set()
        raised: list[str] = []
        for account, days in sorted(windows.items()):
            if self.rules.allowed(account):
                continue
            for day in sorted(days):
                raised += self._day(session, account, day, account in leavers)
        return raised

    def _day(self, session: Session, account: str, day: str, leaving: bool) -> list[str]:
        rows = (
            session.connection()
            .execute(
                sa.select(_T.c.hour, _T.c.archive_no, _T.c.secret, _T.c.off_hours).where(
                    _T.c.account == account, _T.c.day == day
                )
            )
            .all()
        )
        by_hour: dict[str, set[str]] = defaultdict(set)
        secret_by_hour: dict[str, set[str]] = defaultdict(set)
        for r in rows:
            by_hour[r.hour].add(r.archive_no)
            if r.secret:
                secret_by_hour[r.hour].add(r.archive_no)
        all_day = {r.archive_no for r in rows}
        secret_day = {r.archive_no for r in rows if r.secret}
        off_day = {r.archive_no for r in rows if r.off_hours}
        v, s = self.rules.volume, self.rules.secret
        found: list[tuple[str, str, set[str], dict[str, Any]]] = []
        for hour, numbers in sorted(by_hour.items()):
            if len(numbers) > v.per_hour:
                found.append(("volume_hour", hour, numbers, self._facts(hour, numbers, v.per_hour)))
        for hour, numbers in sorted(secret_by_hour.items()):
            if len(numbers) > s.per_hour:
                found.append(("secret_hour", hour, numbers, self._facts(hour, numbers, s.per_hour)))
        if len(all_day) > v.per_day:
            found.append(("volume_day", day, all_day, self._facts(day, all_day, v.per_day)))
        if len(secret_day) > s.per_day:
            found.append(("secret_day", day, secret_day, self._facts(day, secret_day, s.per_day)))
        if len(off_day) > self.rules.off_hours.per_day:
            facts = self._facts(day, off_day, self.rules.off_hours.per_day) | {
                "working_hours": f"{self.rules.work_start:%H:%M}-{self.rules.work_end:%H:%M}",
                "working_days": sorted(self.rules.work_days),
            }
            found.append(("off_hours", day, off_day, facts))
        median = None
        if len(all_day) > v.baseline_floor or (leaving and len(all_day) > 0):
            median = self._median(session, account, day)
        if median is not None and len(all_day) > max(v.baseline_factor * median, v.baseline_floor):
            facts = self._facts(day, all_day, v.baseline_floor) | {
                "median": median,
                "factor": v.baseline_factor,
                "baseline_days": v.baseline_days,
            }
            found.append(("volume_baseline", day, all_day, facts))
        d = self.rules.departing
        if leaving and median is not None:
            over_usual = len(all_day) > max(d.baseline_factor * median, d.baseline_floor)
            if len(all_day) > d.per_day or over_usual:
                facts = self._facts(day, all_day, d.per_day) | {
                    "median": median,
                    "factor": d.baseline_factor,
                    "baseline_days": v.baseline_days,
                    "handover_pending": True,
                }
                found.append(("departing", day, all_day, facts))
        raised = []
        now = self.clock()
        for rule, window, numbers, facts in found:
            case, new = self.alerts.raise_once(
                session,
                key=f"{rule}:{account}:{window}",
                rule=rule,
                account=account,
                archives=sorted(numbers),
                facts=facts,
                now=now,
            )
            if new:
                raised.append(case.uid)
        return raised

    def _facts(self, window: str, numbers: set[str], threshold: int) -> dict[str, Any]:
        """The window (local, with its bounds), the count and the threshold passed."""
        if "T" in window:
            start = datetime.strptime(window, "%Y-%m-%dT%H").replace(tzinfo=self.rules.zone)
            end = start + timedelta(hours=1)
        else:
            start = datetime.strptime(window, "%Y-%m-%d").replace(tzinfo=self.rules.zone)
            end = start + timedelta(days=1)
        return {
            "window": {
                "kind": "hour" if "T" in window else "day",
                "from": start.isoformat(),
                "to": end.isoformat(),
            },
            "count": len(numbers),
            "threshold": threshold,
        }

    def _median(self, session: Session, account: str, day: str) -> float:
        """The account's median of distinct archives per day over the previous days
        (days without any read count as zero)."""
        n = self.rules.volume.baseline_days
        first = (datetime.strptime(day, "%Y-%m-%d") - timedelta(days=n)).strftime("%Y-%m-%d")
        counts: dict[str, int] = dict(
            session.connection()
            .execute(
                sa.select(_T.c.day, sa.func.count(sa.distinct(_T.c.archive_no)))
                .where(_T.c.account == account, _T.c.day >= first, _T.c.day < day)
                .group_by(_T.c.day)
            )
            .all()
        )
        series = [int(counts.get(d, 0)) for d in self._days(first, n)]
        return float(statistics.median(series))

    @staticmethod
    def _days(first: str, n: int) -> list[str]:
        start = datetime.strptime(first, "%Y-%m-%d")
        return [(start + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(n)]

    @staticmethod
    def _leavers(session: Session) -> set[str]:
        """Accounts a pending handover names as the leaver."""
        changes = session.exec(
            select(AccessRequest.change).where(
                AccessRequest.kind == RequestKind.HANDOVER.value,
                AccessRequest.state == RequestState.PENDING.value,
            )
        ).all()
        return {str(c["from"]) for c in changes if isinstance(c, dict) and c.get("from")}

    def _prune(self, session: Session) -> None:
        """Tallies older than the baseline needs are of no further use."""
        keep = self.rules.volume.baseline_days + 2
        oldest = (self.clock().astimezone(self.rules.zone) - timedelta(days=keep)).strftime(
            "%Y-%m-%d"
        )
        session.connection().execute(sa.delete(_T).where(_T.c.day < oldest))
