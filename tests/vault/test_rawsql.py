"""The raw DBAPI path returns what Core returns, commits or rolls back whole, and fails typed."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foundation.db import BUSY_TIMEOUT_MS, sqlite_no_wait
from foundation.rawsql import Raw, raw_autocommit, raw_begin, raw_connect
from tests.factories import SALES, archive
from vault.models import Archive, VaultMeta
from vault.store import ArchiveStore

A = Archive.__table__
M = VaultMeta.__table__
BY_NO = Raw(sa.select(A).where(A.c.archive_no == sa.bindparam("no")))


def test_rows_match_a_core_execution(store: ArchiveStore) -> None:
    no = store.filing.create(archive(), actor=SALES).archive_no
    with store.engine.connect() as conn:
        core = conn.execute(BY_NO.stmt, {"no": no}).one()
    with raw_connect(store.engine) as tx:
        raw = BY_NO.first(tx, {"no": no})
    assert tuple(raw) == tuple(core)
    assert raw._fields == tuple(core._fields)
    assert raw.created_at.tzinfo is not None  # the UTC type decorator ran
    assert isinstance(raw.consent_groups, list)  # JSON decoded
    assert isinstance(raw.wrapped_dek, bytes)
    with raw_connect(store.engine) as tx:
        assert BY_NO.first(tx, {"no": "KH-2099-999999"}) is None


def test_same_statement_through_a_session_and_a_connection(store: ArchiveStore) -> None:
    no = store.filing.create(archive(), actor=SALES).archive_no
    with sa.orm.Session(store.engine) as session:
        via_session = BY_NO.first(session, {"no": no})
    with store.engine.connect() as conn:
        via_conn = BY_NO.first(conn, {"no": no})
    assert via_session == via_conn


def _meta_value(engine: sa.Engine, key: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(M.c.value).where(M.c.key == key)).scalar()


INSERT_META = Raw(M.insert(), column_keys=["key", "value"])
VALUE_OF = Raw(sa.select(M.c.value).where(M.c.key == sa.bindparam("k")))
DELETE_META = Raw(M.delete().where(M.c.key == sa.bindparam("k")))


def test_commit_on_success_and_rollback_on_error(store: ArchiveStore) -> None:
    with raw_begin(store.engine) as tx:
        INSERT_META.execute(tx, {"key": "raw:kept", "value": "1"})
    assert _meta_value(store.engine, "raw:kept") == "1"
    with pytest.raises(RuntimeError), raw_begin(store.engine) as tx:
        INSERT_META.execute(tx, {"key": "raw:dropped", "value": "1"})
        raise RuntimeError("after the write")
    assert _meta_value(store.engine, "raw:dropped") is None


def test_driver_errors_arrive_as_sqlalchemy_errors(store: ArchiveStore) -> None:
    with raw_begin(store.engine) as tx:
        INSERT_META.execute(tx, {"key": "raw:dup", "value": "1"})
    with pytest.raises(sa.exc.IntegrityError), raw_begin(store.engine) as tx:
        INSERT_META.execute(tx, {"key": "raw:dup", "value": "2"})
    assert _meta_value(store.engine, "raw:dup") == "1"
    missing = Raw(sa.text("SELECT nothing FROM no_such_table"))
    with pytest.raises(sa.exc.DBAPIError), raw_connect(store.engine) as tx:
        missing.all(tx)


def test_expanding_parameters_are_refused() -> None:
    stmt = sa.select(A.c.id).where(A.c.archive_no.in_(sa.bindparam("nos", expanding=True)))
    engine = sa.create_engine("sqlite://")
    with pytest.raises(ValueError, match="expanding"), raw_connect(engine) as tx:
        Raw(stmt).all(tx, {"nos": ["x"]})


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=st.text(max_size=60).filter(lambda s: "\x00" not in s))
def test_any_text_round_trips_as_a_bound_value(store: ArchiveStore, value: str) -> None:
    """Values travel as parameters, never as SQL text: quotes and the like are inert."""
    key = f"raw:{abs(hash(value))}"
    with raw_begin(store.engine) as tx:
        INSERT_META.execute(tx, {"key": key, "value": value})
        assert VALUE_OF.scalar(tx, {"k": key}) == value
        DELETE_META.execute(tx, {"k": key})
    assert _meta_value(store.engine, key) is None


def _busy_timeout(tx: object) -> int:
    return int(Raw(sa.text("PRAGMA busy_timeout")).scalar(tx))


def test_each_checkout_waits_as_its_thread_asks(store: ArchiveStore, backend: str) -> None:
    """The event loop's connections never wait for another process's lock; every other
    checkout of the same pooled connection waits again, though no check-in resets it."""
    if backend != "sqlite":
        pytest.skip("SQLite's busy timeout")
    engine = store.engine
    with raw_connect(engine) as tx:
        assert _busy_timeout(tx) == BUSY_TIMEOUT_MS
    for _ in range(2):
        with sqlite_no_wait(), raw_connect(engine) as tx:
            assert _busy_timeout(tx) == 0
    with raw_connect(engine) as tx:
        assert _busy_timeout(tx) == BUSY_TIMEOUT_MS
    with sqlite_no_wait(), raw_begin(engine) as tx:
        assert _busy_timeout(tx) == 0
    with raw_begin(engine) as tx:
        assert _busy_timeout(tx) == BUSY_TIMEOUT_MS


BACKEND_PID = Raw(sa.select(sa.func.pg_backend_pid()))


def _terminate(engine: sa.Engine, *pids: int) -> None:
    """As a restart or an administrator would: the server closes those sessions."""
    admin = sa.create_engine(engine.url, poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        for pid in pids:
            conn.execute(sa.text("SELECT pg_terminate_backend(:p, 5000)"), {"p": pid})
    admin.dispose()


def test_a_connection_the_server_closed_is_never_handed_out(store: ArchiveStore) -> None:
    """At checkout, without a round trip: neither the hot path nor an ORM session gets
    a connection the server closed while it was pooled, so neither fails."""
    engine = store.engine
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no server to drop a connection")
    pids = _pooled_pids(engine, 3)
    _terminate(engine, *pids)
    with sa.orm.Session(engine) as session:
        assert session.execute(sa.select(sa.func.pg_backend_pid())).scalar() not in pids
    with raw_autocommit(engine) as tx:
        INSERT_META.execute(tx, {"key": "checked", "value": "1"})
    assert _meta_value(engine, "checked") == "1"


def _pooled_pids(engine: sa.Engine, count: int) -> list[int]:
    """Check out ``count`` connections at once, so the pool holds that many, idle."""
    handles = [raw_connect(engine) for _ in range(count)]
    try:
        return [BACKEND_PID.scalar(h.__enter__()) for h in handles]
    finally:
        for h in handles:
            h.__exit__(None, None, None)


def test_connections_dropped_in_the_pool_are_replaced_before_the_first_statement(
    unchecked: sa.Engine,
) -> None:
    """Every pooled connection the server dropped unseen is found by the first
    statement sent on it and replaced, and that statement runs on a live one."""
    engine = unchecked
    pids = _pooled_pids(engine, 3)
    _terminate(engine, *pids)
    with raw_autocommit(engine) as tx:
        pid = BACKEND_PID.scalar(tx)
    assert pid not in pids
    with raw_begin(engine) as tx:
        INSERT_META.execute(tx, {"key": "after-drop", "value": "1"})
    assert _meta_value(engine, "after-drop") == "1"


def test_a_connection_dropped_inside_a_transaction_fails_it(store: ArchiveStore) -> None:
    """Once a statement ran, the transaction was on that connection: never redone."""
    engine = store.engine
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no server to drop a connection")
    with pytest.raises(sa.exc.DBAPIError), raw_begin(engine) as tx:
        INSERT_META.execute(tx, {"key": "lost", "value": "1"})
        _terminate(engine, BACKEND_PID.scalar(tx))
        INSERT_META.execute(tx, {"key": "lost-too", "value": "1"})
    assert _meta_value(engine, "lost") is None and _meta_value(engine, "lost-too") is None
    with raw_connect(engine) as tx:  # the broken one was not pooled again
        assert BACKEND_PID.scalar(tx) > 0


def test_a_write_in_autocommit_is_never_sent_twice(unchecked: sa.Engine) -> None:
    """A write that fails on a dropped connection may have committed before the link
    broke: outside a transaction it is an error, never repeated on another connection."""
    engine = unchecked
    _terminate(engine, *_pooled_pids(engine, 3))
    with pytest.raises(sa.exc.DBAPIError), raw_autocommit(engine) as tx:
        INSERT_META.execute(tx, {"key": "once", "value": "1"})
    with raw_autocommit(engine) as tx:  # a read first: replaced as often as needed
        assert BACKEND_PID.scalar(tx) > 0
        INSERT_META.execute(tx, {"key": "once", "value": "2"})
    assert _meta_value(engine, "once") == "2"


def test_a_connection_handed_out_is_never_replaced_behind_its_taker(
    unchecked: sa.Engine,
) -> None:
    """Whatever was sent on ``tx.dbapi`` belongs to the transaction: if the connection
    then drops, the next statement fails instead of going on without it."""
    engine = unchecked
    with pytest.raises(sa.exc.DBAPIError), raw_begin(engine) as tx:
        cursor = tx.dbapi.cursor()
        cursor.execute("INSERT INTO vault_meta (key, value) VALUES ('sent-raw', '1')")
        cursor.execute("SELECT pg_backend_pid()")
        _terminate(engine, cursor.fetchone()[0])
        INSERT_META.execute(tx, {"key": "after-raw", "value": "1"})
    assert _meta_value(engine, "sent-raw") is None and _meta_value(engine, "after-raw") is None
