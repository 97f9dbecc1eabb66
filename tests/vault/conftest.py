from __future__ import annotations

import pytest

from audit.log import AuditLog
from vault.store import ArchiveStore
from vault.vault import Vault


@pytest.fixture
def store(vault: Vault, sink: AuditLog) -> ArchiveStore:
    return ArchiveStore(vault=vault, audit=sink)
