"""Leak cases' duties and containment, for ``bench/leaks.py`` (``run(quick)``).

Rows, each measured in the same run as its baseline:
- the case list with overdue cases first (an outer join on ``leak_duty`` and two
  CASE expressions, ``LeakCases.page``) vs the same page ordered newest first
  without the join (the list before duties existed), over N cases of which a
  tenth have duties and a fiftieth are overdue;
- ``--overdue`` alone (the filter) vs that baseline;
- containing an account that holds G active grants (sessions, tokens, grants by
  revision, pending requests, loans, the case events and their audit entries)
  vs disabling the same kind of account (``directory.disable_user``, which only
  moves its token generation).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa
from sqlmodel import Session, col, select

from audit.events import Actor
from foundation.db import transaction
from foundation.settings import Settings
from policies.decision import Principal
from policies.directory import add_user, disable_user
from policies.leak_containment import Containment
from policies.leak_duty_models import LeakDuty
from policies.leak_models import LeakCase
from policies.leaks import LeakCases
from policies.models import AccessGrant, AccessRequest
from policies.workflow import Workflow
from vault.vault import init_vault

HANDLER = Principal(username="boss", roles=frozenset({"info_supervisor"}))
ACTOR = Actor("boss", "info_supervisor")


def _ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _cases(engine: sa.Engine, n: int, now: datetime) -> None:
    cases, duties = [], []
    for i in range(n):
        at = now - timedelta(minutes=n - i)
        cases.append(
            {
                "uid": f"LK-{i:010X}",
                "source": "report",
                "rule": "",
                "reporter": "someone",
                "state": "reported",
                "outcome": "",
                "channel": "unknown",
                "archives": [],
                "facts": {},
                "created_at": at,
                "updated_at": at,
            }
        )
    with transaction(engine) as s:
        s.connection().execute(sa.insert(LeakCase.__table__), cases)  # type: ignore[attr-defined]
        ids = s.exec(select(LeakCase.id).order_by(col(LeakCase.id))).all()
        for i, case_id in enumerate(ids):
            if i % 10:
                continue
            aware = now - timedelta(hours=5 if i % 50 == 0 else 1)
            duties.append(
                {
                    "case_id": case_id,
                    "pi_affected": True,
                    "customers": 3,
                    "groups": ["contact"],
                    "archives": [],
                    "cause": "other",
                    "aware_at": aware,
                    "regulator_due_at": aware + timedelta(hours=4),
                    "individuals_due_at": aware + timedelta(hours=72),
                    "updated_at": now,
                    "updated_by": "boss",
                }
            )
        s.connection().execute(sa.insert(LeakDuty.__table__), duties)  # type: ignore[attr-defined]


def _grants(engine: sa.Engine, who: str, g: int, now: datetime) -> None:
    with transaction(engine) as s:
        req = AccessRequest(
            uid=f"R-{who}",
            kind="view",
            requester=who,
            purpose="other",
            reason="bench",
            state="approved",
            expires_at=now + timedelta(days=1),
        )
        s.add(req)
        s.flush()
        s.connection().execute(
            sa.insert(AccessGrant.__table__),  # type: ignore[attr-defined]
            [
                {
                    "uid": f"G-{who}-{i}",
                    "request_id": req.id,
                    "kind": "view",
                    "subject": who,
                    "archives": [f"KH-2026-{i:06d}"],
                    "actions": ["read"],
                    "groups": ["contact"],
                    "not_before": now,
                    "not_after": now + timedelta(days=1),
                    "purpose": "other",
                    "reason": "bench",
                    "state": "active",
                }
                for i in range(g)
            ],
        )


def _timed(fn: Any, rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return samples


def run(quick: bool) -> list[dict[str, Any]]:
    n, g, rounds, accounts = (2_000, 100, 30, 5) if quick else (20_000, 1_000, 50, 10)
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        vault = init_vault(Settings(data_dir=Path(tmp), expected_archives=1000))
        engine = vault.engine
        leaks = LeakCases(Workflow(audit=vault.audit_log()), vault.keys)
        _cases(engine, n, now)

        def page(overdue: bool = False) -> None:
            with Session(engine) as s:
                leaks.page(s, HANDLER, now, overdue=overdue, limit=50)

        base_q = select(LeakCase).order_by(col(LeakCase.created_at).desc(), col(LeakCase.id).desc())

        def baseline() -> None:
            with Session(engine) as s:
                s.exec(select(sa.func.count()).select_from(select(LeakCase).subquery())).one()
                s.exec(base_q.limit(50)).all()

        for fn in (page, baseline):
            _timed(fn, 5)
        plain = _ms(_timed(baseline, rounds))
        ordered = _ms(_timed(page, rounds))
        overdue = _ms(_timed(lambda: page(True), rounds))

        with transaction(engine) as s:
            add_user(s, username="boss", roles=["info_supervisor"], department="cs")
            for i in range(accounts):
                for prefix in ("suspect", "leaver"):
                    add_user(s, username=f"{prefix}{i}", roles=["salesperson"], department="x")
        containment = Containment(leaks, leaks.desk.loans)  # type: ignore[attr-defined]
        case_uid = f"LK-{n - 1:010X}"
        contain, disable = [], []
        for i in range(accounts):
            _grants(engine, f"suspect{i}", g, now)
            _grants(engine, f"leaver{i}", g, now)
            t = time.perf_counter()
            with transaction(engine) as s:
                containment.contain(
                    s,
                    case_uid,
                    HANDLER,
                    ACTOR,
                    now,
                    account=f"suspect{i}",
                    disable=True,
                    reason="bench",
                )
            contain.append(time.perf_counter() - t)
            t = time.perf_counter()
            with transaction(engine) as s:
                disable_user(s, f"leaver{i}", audit=vault.audit_log(), actor=ACTOR)
            disable.append(time.perf_counter() - t)
        vault.engine.dispose()
    return [
        {
            "name": "leak list, overdue first (page of 50)",
            "cases": n,
            "value": round(ordered, 2),
            "unit": "ms",
            "ratio": round(ordered / plain, 2),
            "baseline": "newest first, no duties",
        },
        {
            "name": "leak list, overdue only",
            "cases": n,
            "value": round(overdue, 2),
            "unit": "ms",
            "ratio": round(overdue / plain, 2),
            "baseline": "newest first, no duties",
        },
        {
            "name": f"containment of an account with {g} grants",
            "value": round(_ms(contain), 1),
            "unit": "ms",
            "ratio": round(statistics.median(contain) / statistics.median(disable), 1),
            "baseline": "disabling the account alone",
        },
    ]


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv), ensure_ascii=False, indent=1))
