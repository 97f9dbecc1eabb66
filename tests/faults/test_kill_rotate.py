"""``keys rotate`` killed with SIGKILL at each of its steps: every archive still reads, the
next ``keys rotate`` completes the rotation, and the log verifies.

The rotation is killed after it added the new key version to the key file but before
the database made it active; in the middle of its second batch (the first committed,
the second's rewrapped keys written but not committed); and after its last batch and
audit entry, before the emptied old version was retired from the key file.
"""

from __future__ import annotations

import pytest
from sqlmodel import Session

from tests.factories import SALES, archive
from tests.faults.kill import audit_verifies, cli, held_env, kill_at_hold
from vault.rotation import kek_counts
from vault.store import ArchiveStore
from vault.vault import open_vault

pytestmark = pytest.mark.slow

HOLDS = {
    "key-added": {"FAULT_HOLD": "vault.rotation:_set_active", "FAULT_HOLD_WHEN": "before"},
    "mid-batch": {
        "FAULT_HOLD": "sqlalchemy.orm.session:Session.execute",
        "FAULT_HOLD_MATCH": "'b_ct'",  # the batch's update of the wrapped keys
        "FAULT_HOLD_AT": "2",
    },
    "before-retire": {"FAULT_HOLD": "vault.keys:Keyring.retire", "FAULT_HOLD_WHEN": "before"},
}


def _reads_everything(vault, phones: dict[str, str]) -> None:
    """A vault opened afresh (key file and database as the kill left them) reads each one."""
    fresh = ArchiveStore(open_vault(vault.settings, engine=vault.engine))
    for no, phone in phones.items():
        assert fresh.reader.read(no, ["contact"], actor=SALES).content["contact"] == {
            "mobile_phone": phone
        }


@pytest.mark.parametrize("point", sorted(HOLDS))
def test_a_rotation_killed_at_any_step_leaves_every_archive_readable_and_completes(
    store, env, marker, point: str
) -> None:
    phones = {}
    for i in range(7):
        phone = f"1390000{i:04d}"
        made = store.filing.create(archive(profile={"name": f"客户{i}", "mobile_phone": phone}),
                                   actor=SALES)  # fmt: skip
        phones[made.archive_no] = phone
    env = {**env, "VAULT_ROTATE_BATCH": "3"}

    held = held_env(env, marker, "", **HOLDS[point])
    kill_at_hold(held, marker, "keys", "rotate", "--level", "internal")
    _reads_everything(store.vault, phones)
    audit_verifies(env)

    cli(env, "keys", "rotate", "--level", "internal")
    _reads_everything(store.vault, phones)
    with Session(store.engine) as s:
        versions = kek_counts(s)["internal"]
    assert len(versions) == 1 and sum(versions.values()) == len(phones), versions
    status = cli(env, "keys", "status")
    assert status.returncode == 0
    audit_verifies(env)
