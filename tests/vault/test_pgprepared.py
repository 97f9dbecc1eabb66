"""A write sent through libpq's prepared call behaves exactly as through the cursor."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from foundation.pgprepared import PreparedWrite
from foundation.rawsql import Raw, raw_autocommit, raw_begin
from tests.vault.test_rawsql import BACKEND_PID, M, _meta_value, _pooled_pids, _terminate
from vault.store import ArchiveStore

PREPARED = Raw(M.insert(), column_keys=["key", "value"], prepared="test_meta_insert")
NAME = "archive_vault_test_meta_insert"
NAMES = Raw(sa.select(sa.column("name", sa.Text)).select_from(sa.table("pg_prepared_statements")))


@pytest.fixture
def pg_engine(store: ArchiveStore) -> sa.Engine:
    if store.engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL prepared statement")
    return store.engine


def _prepared_here(tx: object) -> set[str]:
    return {row[0] for row in NAMES.all(tx)}


def test_parameters_are_numbered_once_each_and_percent_signs_unescaped() -> None:
    write = PreparedWrite("w", "INSERT INTO t VALUES (%(a)s, %(b)s, %(a)s, '100%%')")
    assert write.sql == b"INSERT INTO t VALUES ($1, $2, $1, '100%')"
    assert write.names == ("a", "b")


def test_only_unambiguous_values_are_encoded_by_hand() -> None:
    write = PreparedWrite("w", "SELECT %(a)s, %(b)s, %(c)s, %(d)s, %(e)s")
    params, formats = write.encode({"a": None, "b": "é", "c": 7, "d": True, "e": b"\x00\xff"}) or (
        [],
        [],
    )
    assert params == [None, "é".encode(), b"7", b"t", b"\x00\xff"]
    assert formats == [0, 0, 0, 0, 1]  # bytes go as a binary parameter, never as escaped text
    assert write.encode({"a": datetime.now(UTC), "b": 1, "c": 1, "d": 1, "e": 1}) is None
    assert write.encode({"a": 1.5, "b": 1, "c": 1, "d": 1, "e": 1}) is None


def test_an_autocommit_write_is_prepared_once_and_durable(pg_engine: sa.Engine) -> None:
    engine = pg_engine
    with raw_autocommit(engine) as tx:
        assert PREPARED.execute(tx, {"key": "prep:1", "value": "1"}) == 1
        assert NAME in _prepared_here(tx)
        assert PREPARED.execute(tx, {"key": "prep:2", "value": "2"}) == 1
    assert _meta_value(engine, "prep:1") == "1" and _meta_value(engine, "prep:2") == "2"


def test_a_write_opening_a_transaction_is_still_rolled_back(pg_engine: sa.Engine) -> None:
    engine = pg_engine
    """psycopg sends BEGIN before a transaction's first statement; a write that went
    around it would commit on its own and survive the rollback."""
    with pytest.raises(RuntimeError), raw_begin(engine) as tx:
        PREPARED.execute(tx, {"key": "prep:first", "value": "1"})
        raise RuntimeError("after the write")
    assert _meta_value(engine, "prep:first") is None
    with sa.orm.Session(engine) as session:
        PREPARED.execute(session, {"key": "prep:session", "value": "1"})
        session.rollback()
    assert _meta_value(engine, "prep:session") is None


def test_inside_a_transaction_a_write_never_meets_a_deallocated_statement(
    pg_engine: sa.Engine,
) -> None:
    """psycopg deallocates every prepared statement of a connection when it rolls back one
    holding its own: a prepared call that found its statement gone would abort the whole
    transaction. Inside one, the write goes through the cursor; it commits and rolls back
    with the transaction."""
    engine = pg_engine
    with raw_autocommit(engine) as tx:
        PREPARED.execute(tx, {"key": "prep:before", "value": "1"})  # prepared on this connection
    with raw_begin(engine) as tx:
        BACKEND_PID.scalar(tx)  # the transaction is open now
        tx.dbapi.execute("DEALLOCATE ALL")
        assert PREPARED.execute(tx, {"key": "prep:inside", "value": "1"}) == 1
    assert _meta_value(engine, "prep:inside") == "1"
    with pytest.raises(RuntimeError), raw_begin(engine) as tx:
        BACKEND_PID.scalar(tx)
        PREPARED.execute(tx, {"key": "prep:undone", "value": "1"})
        raise RuntimeError("after the write")
    assert _meta_value(engine, "prep:undone") is None


def test_a_statement_deallocated_behind_its_back_is_prepared_again(pg_engine: sa.Engine) -> None:
    engine = pg_engine
    with raw_autocommit(engine) as tx:
        PREPARED.execute(tx, {"key": "prep:a", "value": "1"})
        tx.dbapi.execute("DEALLOCATE ALL")
        assert PREPARED.execute(tx, {"key": "prep:b", "value": "1"}) == 1
    assert _meta_value(engine, "prep:b") == "1"


def test_server_errors_arrive_as_sqlalchemy_errors(pg_engine: sa.Engine) -> None:
    engine = pg_engine
    with raw_autocommit(engine) as tx:
        PREPARED.execute(tx, {"key": "prep:dup", "value": "1"})
        with pytest.raises(sa.exc.IntegrityError):
            PREPARED.execute(tx, {"key": "prep:dup", "value": "2"})
        with pytest.raises(sa.exc.IntegrityError):
            PREPARED.execute(tx, {"key": None, "value": "2"})
    assert _meta_value(engine, "prep:dup") == "1"


def test_a_prepared_write_in_autocommit_on_a_dropped_connection_is_never_resent(
    unchecked: sa.Engine,
) -> None:
    engine = unchecked
    _terminate(engine, *_pooled_pids(engine, 3))
    with pytest.raises(sa.exc.DBAPIError), raw_autocommit(engine) as tx:
        PREPARED.execute(tx, {"key": "prep:once", "value": "1"})
    with raw_autocommit(engine) as tx:  # a read first: replaced as often as needed
        assert BACKEND_PID.scalar(tx) > 0
        # Had the failed write been sent again elsewhere, this one would be a duplicate.
        assert PREPARED.execute(tx, {"key": "prep:once", "value": "2"}) == 1
    assert _meta_value(engine, "prep:once") == "2"
