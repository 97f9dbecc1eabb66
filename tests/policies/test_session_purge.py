"""The sweep removes web-session rows that can never be used again, and only those."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from foundation.db import transaction
from policies.revocation import purge_web_sessions
from tests.policies.conftest import T0
from vault.auth_models import WebSession

_S = WebSession.__table__  # type: ignore[attr-defined]
D = timedelta(days=1)


def _rows(db: sa.Engine) -> set[str]:
    with db.connect() as conn:
        return set(conn.execute(sa.select(_S.c.key)).scalars())


def _add(db: sa.Engine, key: str, created, *, seen=None, ended=None) -> None:
    with transaction(db) as s:
        s.connection().execute(
            sa.insert(_S).values(
                key=key.ljust(64, "0"),
                username="alice",
                generation=0,
                created_at=created,
                last_seen_at=seen or created,
                ended_at=ended,
            )
        )


def test_only_dead_sessions_go_and_a_second_sweep_removes_nothing(db, wf) -> None:
    now = T0 + 30 * D
    _add(db, "open", now - timedelta(hours=2))
    _add(db, "endedrecently", now - 2 * D, ended=now - timedelta(hours=3))
    _add(db, "endedlongago", now - 3 * D, ended=now - 2 * D)
    _add(db, "neverended", now - 9 * D, seen=now - 9 * D)
    _add(db, "weekold", now - 7 * D)  # a week is the longest a session may be set to live
    with transaction(db) as s:
        out = wf.sweeper.sweep(s, now=now)
    assert out.purged_web_sessions == 2
    kept = {k.rstrip("0") for k in _rows(db)}
    assert kept == {"open", "endedrecently", "weekold"}
    with transaction(db) as s:
        assert purge_web_sessions(s, now) == 0
