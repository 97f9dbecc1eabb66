"""Bringing a restored log up to a newer bundle: the same entries and hashes, never a fork."""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.codec import event_fields, format_time
from audit.guards import install_guards
from audit.locks import lock_and_read_head
from audit.log import AuditLog
from audit.merkle import verify_consistency
from audit.models import queue_table
from audit.queue import chain_entry, enqueue
from audit.restore import BundleRefused, VerifiedBundle, bring_back, verified_bundle
from foundation.db import make_engine, transaction
from vault.vault import Vault

from ..conftest import PG_URL
from .conftest import FakeClock, append_n, make_event


@pytest.fixture
def other(backend: str, tmp_path: Path, vault: Vault) -> Iterator[AuditLog]:
    """A second database holding only the audit tables, the same vault's keys: a restore."""
    if backend == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'restored.db'}")
        install_guards(engine)
        yield AuditLog(
            engine=engine, keys=vault.keys, settings=vault.settings, auto_checkpoint=False
        )
        engine.dispose()
        return
    schema = "t_" + secrets.token_hex(6)
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    engine = make_engine(PG_URL, pg_schema=schema)
    try:
        install_guards(engine)
        yield AuditLog(
            engine=engine,
            keys=vault.keys,
            settings=vault.settings,
            clock=FakeClock(),
            auto_checkpoint=False,
        )
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def _exported(log: AuditLog) -> dict[str, Any]:
    out = io.StringIO()
    log.export_bundle(out)
    return dict(json.loads(out.getvalue()))


def _bundle(log: AuditLog) -> VerifiedBundle:
    return verified_bundle(_exported(log), public_key=log.public_key, origin=log.origin)


def _hashes(log: AuditLog) -> list[str]:
    return [e["entry_hash"] for e in _exported(log)["entries"]]


def test_the_bundle_comes_back_with_its_hashes_and_checkpoints(
    filled: AuditLog, other: AuditLog
) -> None:
    done = bring_back(other.engine, _bundle(filled), other.entry_mac())
    assert (done.before, done.added, done.checkpoints) == (0, 20, 2)
    assert _hashes(other) == _hashes(filled)
    assert other.verify().ok  # MACs too: the same key file's MAC key
    assert other.latest_checkpoint() == filled.latest_checkpoint()

    append_n(filled, 5, start=20)
    published = filled.checkpoint()
    assert published is not None
    again = bring_back(other.engine, _bundle(filled), other.entry_mac())
    assert (again.before, again.added) == (20, 5)
    # The restored log goes on; its next checkpoint extends the one published before.
    append_n(other, 1, start=99)
    after = other.checkpoint()
    assert after is not None and after.size == 26
    proof = other.consistency_proof(published.size, after.size)
    verify_consistency(published.size, after.size, published.root, after.root, proof)


def test_a_log_that_went_its_own_way_is_refused_and_left_as_it_was(
    filled: AuditLog, other: AuditLog
) -> None:
    bring_back(other.engine, _bundle(filled), other.entry_mac())
    append_n(other, 1, start=50)  # entry 21 here is not entry 21 there: a fork
    append_n(filled, 3, start=20)
    assert filled.checkpoint() is not None
    with pytest.raises(BundleRefused, match="different histories"):
        bring_back(other.engine, _bundle(filled), other.entry_mac())
    assert other.head() == 21 and other.verify().ok


def test_a_bundle_the_restored_log_already_extends_adds_nothing(
    filled: AuditLog, other: AuditLog
) -> None:
    bring_back(other.engine, _bundle(filled), other.entry_mac())
    append_n(other, 2, start=40)
    assert other.checkpoint() is not None
    done = bring_back(other.engine, _bundle(filled), other.entry_mac())  # 20 of its 22
    assert (done.before, done.added) == (22, 0)
    assert other.head() == 22 and other.verify().ok


def test_only_a_bundle_signed_with_the_vaults_key_is_taken(filled: AuditLog) -> None:
    data = _exported(filled)
    edited = json.loads(json.dumps(data).replace('"user1"', '"user2"', 1))
    with pytest.raises(BundleRefused, match="does not verify"):
        verified_bundle(edited, public_key=filled.public_key, origin=filled.origin)
    stranger = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(BundleRefused, match="does not verify"):
        verified_bundle(data, public_key=stranger, origin=filled.origin)
    with pytest.raises(BundleRefused, match="another vault"):
        verified_bundle(data, public_key=filled.public_key, origin="archive-vault/audit/x")


def test_an_entry_the_backup_caught_queued_is_chained_once(
    filled: AuditLog, other: AuditLog
) -> None:
    """A PostgreSQL backup may hold an entry still queued; the bundle chains it, once."""
    bring_back(other.engine, _bundle(filled), other.entry_mac())
    columns = event_fields(make_event(77))
    columns["time"] = format_time(datetime(2025, 3, 2, tzinfo=UTC))
    with transaction(other.engine) as session:  # in the backup: waiting in the queue
        enqueue(session, dict(columns), other.entry_mac())
    with transaction(filled.engine) as session:  # in the live vault: chained as entry 21
        chain_entry(session, dict(columns), lock_and_read_head(session), filled.entry_mac())
    assert filled.checkpoint() is not None
    done = bring_back(other.engine, _bundle(filled), other.entry_mac())
    assert (done.added, done.dequeued) == (1, 1)
    with other.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(queue_table)).scalar_one() == 0
    assert other.head() == 21 and other.verify().ok
    assert _hashes(other) == _hashes(filled)
