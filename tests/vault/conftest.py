from __future__ import annotations

import pytest

from audit.events import RecordingSink
from vault.store import ArchiveStore
from vault.vault import Vault


@pytest.fixture
def store(vault: Vault, sink: RecordingSink) -> ArchiveStore:
    return ArchiveStore(vault=vault, audit=sink)
