from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from audit.log import AuditLog
from foundation.db import _closed_by_server
from vault.store import ArchiveStore
from vault.vault import Vault


@pytest.fixture
def store(vault: Vault, sink: AuditLog) -> ArchiveStore:
    return ArchiveStore(vault=vault, audit=sink)


@pytest.fixture
def unchecked(store: ArchiveStore) -> Iterator[sa.Engine]:
    """The store's engine without its check at checkout: a dropped connection is then
    found only by the first statement sent on it, as when the server closes it after
    the check (the race the statement-level replacement is for)."""
    engine = store.engine
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no server to drop a connection")
    sa.event.remove(engine, "checkout", _closed_by_server)
    try:
        yield engine
    finally:
        sa.event.listen(engine, "checkout", _closed_by_server)
