"""``customer import`` killed with SIGKILL half-way leaves none of the file, and the log whole.

The import is held after its second batch was sealed, inserted and audited (so rows
and audit entries of the file are written, inside what must be one transaction), and
killed there. Afterwards no archive and no import entry of the file exists, the log
verifies, and the same file imports completely on the next run.
"""

from __future__ import annotations

import pytest

from foundation.db import transaction
from policies.directory import add_user
from tests.faults.conftest import count, entries
from tests.faults.kill import audit_verifies, cli, held_env, kill_at_hold, write_jsonl
from vault.seed import DEMO_CUSTODIAN, SyntheticArchives

pytestmark = pytest.mark.slow

ROWS, BATCH = 1500, 500


def test_an_import_killed_after_two_batches_leaves_nothing_and_runs_again(
    vault, env, marker, tmp_path
) -> None:
    with transaction(vault.engine) as session:  # the secret rows' custodian
        add_user(session, username=DEMO_CUSTODIAN, roles=["information_officer"],
                 department="客户服务部")  # fmt: skip
    rows = list(SyntheticArchives(seed=3, pool=20, custodian=DEMO_CUSTODIAN).many(ROWS))
    source = str(write_jsonl(tmp_path / "big.jsonl", rows))
    env = {**env, "VAULT_IMPORT_BATCH": str(BATCH)}
    before = entries(vault, "archive:import")

    held = held_env(env, marker, "vault.importer:_Batcher.flush", FAULT_HOLD_AT="2")
    kill_at_hold(held, marker, "customer", "import", source)

    assert count(vault, "archive") == 0
    assert entries(vault, "archive:import") == before
    audit_verifies(env)

    out = cli(env, "customer", "import", source)
    assert f"Imported {ROWS} archives" in out.stdout
    assert count(vault, "archive") == ROWS
    assert entries(vault, "archive:import") == before + ROWS // BATCH
    audit_verifies(env)
