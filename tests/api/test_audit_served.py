"""A served vault on PostgreSQL with two workers, read by parallel clients, while the
application's database role forges what it can: a junk checkpoint row and a correctly
hashed entry. Reads keep working, checkpoints keep being signed past the junk, and
``verify`` names exactly the two forgeries.

``archive-vault serve --workers 2`` runs as operators run it, in its own process.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.audit.test_mac import forge_next_entry, insert_junk_checkpoints
from tests.conftest import PG_URL
from vault.store import ArchiveStore

pytestmark = pytest.mark.skipif(
    not PG_URL, reason="PostgreSQL run: set VAULT_TEST_DATABASE_URL to enable"
)
PASSWORD = "served vault password 1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _poll(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A PostgreSQL vault (own schema) with one salesperson and five of their archives, served."""
    from api.security import hash_password
    from audit.events import Actor
    from foundation.db import transaction
    from foundation.settings import Settings
    from policies.directory import add_user
    from vault.importer import bulk_insert
    from vault.seed import SyntheticArchives
    from vault.vault import init_vault

    schema = "t_" + secrets.token_hex(6)
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
    data = tmp_path / "var"
    settings = Settings(data_dir=data, database_url=url, expected_archives=1000)
    vault = init_vault(settings)
    store = ArchiveStore(vault)
    with transaction(vault.engine) as session:
        user = add_user(
            session, username="zhang.wei", roles=["salesperson"], department="销售一部",
            clearance="secret",
        )  # fmt: skip
        user.password_hash = hash_password(PASSWORD)
    gen = SyntheticArchives(seed=7, owners=(("zhang.wei", "销售一部"),))
    rows = (
        store.filing.prepare({**r, "classification": "internal", "custodian": None})
        for r in gen.many(5)
    )
    report = bulk_insert(store, rows, actor=Actor("test", "system"), total=5, source="test")
    store.audit.checkpoint_if_new()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
    env["VAULT_DATABASE_URL"] = url
    log_file = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--workers", "2", "--port", str(port),
         "--data-dir", str(data)],
        env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        assert _poll(up, 60), (tmp_path / "serve.log").read_text()
        archives = [report.first, report.last]
        yield {"base": base, "vault": vault, "archives": archives, "log": tmp_path / "serve.log"}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log_file.close()
        vault.engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def test_parallel_reads_survive_forgeries_by_the_app_role_and_verify_names_them(
    served: dict[str, Any],
) -> None:
    from audit.log import AuditLog

    vault = served["vault"]
    log = AuditLog(
        engine=vault.engine, keys=vault.keys, settings=vault.settings, auto_checkpoint=False
    )
    base = served["base"]
    token = httpx.post(
        f"{base}/auth/token", data={"username": "zhang.wei", "password": PASSWORD}, timeout=30
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    paths = [f"/customers/{no}?groups=contact" for no in served["archives"]]

    stop = threading.Event()
    statuses: list[int] = []
    lock = threading.Lock()

    def reader(i: int) -> None:
        mine: list[int] = []
        with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
            while not stop.is_set():
                mine.append(c.get(paths[i % len(paths)]).status_code)
        with lock:
            statuses.extend(mine)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:

        def signed_through(seq: int) -> Any:
            return lambda: (cp := log.latest_checkpoint()) is not None and cp.size >= seq

        # The served vault signs about a second after appends (two workers, each its own).
        assert _poll(lambda: log.head() > 10, 30)
        assert _poll(signed_through(log.head()), 10), "no checkpoint covered the reads"

        # The app role adds a junk checkpoint at the size the log is about to reach.
        junk_size = log.head() + 5
        insert_junk_checkpoints(vault.engine, [junk_size])
        assert _poll(lambda: log.head() > junk_size + 5, 30)
        assert _poll(signed_through(junk_size + 5), 10), "the junk row stopped the signer"

        # ... and a correctly hashed "read" by a user who does not exist.
        forged = forge_next_entry(vault.engine)
        assert _poll(lambda: log.head() > forged + 20, 30)  # reads carry on after it
    finally:
        stop.set()
        for t in threads:
            t.join()

    assert statuses and set(statuses) == {200}, sorted(set(statuses))
    log.integrate()  # the last reads' entries may still wait in the queue (PostgreSQL)
    report = log.verify()
    assert [(p.kind, p.seq) for p in report.all_problems()] == [
        ("forged", forged),
        ("checkpoint", None),
    ], report.all_problems()
    assert f"size {junk_size}" in report.all_problems()[1].message
    assert report.entries == log.head()  # every honest entry after the forgery verifies
    # The signers refuse to sign over the forged entry and say so, without a traceback.
    assert _poll(lambda: f"entry {forged} carries no valid MAC" in served["log"].read_text(), 10)
    assert "Traceback" not in served["log"].read_text()
