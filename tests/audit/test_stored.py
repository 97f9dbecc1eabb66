"""The log's time, action and outcome stored as integers read back as the text that was hashed."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from hypothesis import given
from hypothesis import strategies as st

from audit.codec import format_time
from audit.events import Actor, AuditAction, AuditEvent, Outcome
from audit.guards import guards_installed
from audit.log import AuditLog
from audit.models import entry_table
from audit.stored import (
    ACTION_CODES,
    OUTCOME_CODES,
    as_stored,
    micros_of,
    time_micros,
    time_text,
    written,
)
from foundation.db import transaction
from vault import migrate

from .conftest import _unguarded

ROOT = Path(__file__).resolve().parents[2]
COMPACT = "0022"
MOMENTS = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999)
).map(lambda d: d.replace(tzinfo=UTC))


def _migration(name: str = "0022_audit_compact_values") -> object:
    path = ROOT / "vault" / "migrations" / "versions" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@given(MOMENTS)
def test_a_time_reads_back_as_the_text_that_was_written(moment: datetime) -> None:
    text = format_time(moment)
    stored = time_micros(text)
    assert stored == micros_of(moment)
    assert time_text(stored) == text


@given(MOMENTS, MOMENTS)
def test_integer_order_is_time_order(a: datetime, b: datetime) -> None:
    assert (time_micros(format_time(a)) < time_micros(format_time(b))) == (a < b)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-28T01:20:13.123456",  # no Z
        "2026-11-28T01:20:13Z",  # no fraction
        "2026-11-28 01:20:13.123456Z",  # a space for the T
        "2026-11-28T1:20:13.1234567Z",  # a one-digit hour, seven fraction digits
        "2026-02-30T01:20:13.123456Z",  # no such day
        "2026-11-28T01:20:13.12345٣Z",  # a non-ASCII digit
        "",
    ],
)
def test_only_the_canonical_time_text_is_stored(text: str) -> None:
    with pytest.raises(ValueError, match="not an audit time"):
        time_micros(text)


def test_every_action_and_outcome_has_one_code_and_the_migration_agrees() -> None:
    assert set(ACTION_CODES) == {a.value for a in AuditAction}
    assert set(OUTCOME_CODES) == {o.value for o in Outcome}
    assert len(set(ACTION_CODES.values())) == len(ACTION_CODES)
    # The newest migration that writes the table out holds all of it; each earlier one
    # holds a prefix of it, never another number for a name (codes are only appended).
    newest = _migration("0023_audit_backup_restore_codes")
    assert newest.ACTION_CODES == ACTION_CODES  # type: ignore[attr-defined]
    assert newest.OUTCOME_CODES == OUTCOME_CODES  # type: ignore[attr-defined]
    older = _migration().ACTION_CODES  # type: ignore[attr-defined]
    assert older == {name: ACTION_CODES[name] for name in older}
    assert sorted(older.values()) == list(range(1, len(older) + 1))


def test_values_no_code_names_read_as_no_entry_could_carry() -> None:
    assert written(2**62, 999, 0) == (f"?{2**62}", "?999", "?0")
    assert as_stored(*written(1, 1, 1)) == (1, 1, 1)


def test_a_code_edited_in_the_database_is_an_edited_entry(filled: AuditLog) -> None:
    with _unguarded(filled.engine) as conn:
        conn.exec_driver_sql("UPDATE audit_entry SET action = 999 WHERE seq = 6")
    report = filled.verify()
    assert (report.problem.kind, report.problem.seq) == ("edited", 6)


def _append_at(vault, moments: list[datetime]) -> AuditLog:
    """Entries stamped with the given times, every action and outcome in turn."""
    actions = list(AuditAction)
    outcomes = list(Outcome)
    now = [moments[0]]
    log = AuditLog(
        engine=vault.engine, keys=vault.keys, settings=vault.settings, clock=lambda: now[0]
    )
    for i, moment in enumerate(moments):
        now[0] = moment
        with transaction(log.engine) as session:
            log.append(
                session,
                AuditEvent(
                    actions[i % len(actions)],
                    Actor(f"user{i % 3}", "salesperson", "10.0.0.1"),
                    outcome=outcomes[i % len(outcomes)],
                    archives=(f"KH-2026-{i:06d}",),
                    groups=("contact",),
                ),
            )
    log.integrate()
    now[0] = datetime.now(UTC)
    return log


def _typed(engine: sa.Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(entry_table).order_by("seq"))]


def _raw_times(engine: sa.Engine) -> list[object]:
    with engine.connect() as conn:
        return list(conn.exec_driver_sql("SELECT time FROM audit_entry ORDER BY seq").scalars())


def test_the_upgrade_keeps_every_entry_and_its_verdict(vault) -> None:
    start = datetime(2024, 2, 28, 23, 59, 59, 999_999, tzinfo=UTC)  # across a leap day
    moments = [start + timedelta(microseconds=7 * i, hours=i) for i in range(40)]
    moments += [datetime(2000, 1, 1, tzinfo=UTC), datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC)]
    log = _append_at(vault, moments)
    log.checkpoint()
    before = _typed(vault.engine)
    report = log.verify()
    assert report.ok and report.entries == len(moments)
    assert _raw_times(vault.engine) == [micros_of(m) for m in moments]

    command.downgrade(migrate.config(vault.engine), str(int(COMPACT) - 1).zfill(4))
    assert _raw_times(vault.engine) == [format_time(m) for m in moments]  # the text again
    assert _typed(vault.engine) == before
    migrate.upgrade(vault.engine)

    assert migrate.current(vault.engine) == migrate.head()
    assert _raw_times(vault.engine) == [micros_of(m) for m in moments]
    assert _typed(vault.engine) == before
    assert guards_installed(vault.engine)
    again = log.verify()
    assert again.ok and again.root == report.root and again.entries == report.entries
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), vault.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_entry WHERE seq = 1"))


@pytest.mark.parametrize(
    ("column", "value"),
    [("time", "'2026-11-28T01:20:13Z'"), ("action", "'archive:peek'"), ("outcome", "'maybe'")],
)
def test_an_edited_log_is_refused_and_left_as_it_was(vault, column: str, value: str) -> None:
    _append_at(vault, [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i) for i in range(3)])
    command.downgrade(migrate.config(vault.engine), str(int(COMPACT) - 1).zfill(4))
    with _unguarded(vault.engine) as conn:
        conn.exec_driver_sql(f"UPDATE audit_entry SET {column} = {value} WHERE seq = 2")
    with pytest.raises(Exception, match="edited outside the vault"):
        migrate.upgrade(vault.engine)
    assert migrate.current(vault.engine) == str(int(COMPACT) - 1).zfill(4)
    with vault.engine.connect() as conn:
        kept = conn.exec_driver_sql(f"SELECT {column} FROM audit_entry WHERE seq = 2").scalar()
    assert f"'{kept}'" == value
