"""Fail-closed beyond the read: no committed audit entry, no plaintext, whichever way out.

Two failures, each tried on every way content leaves the vault (read, export,
history, interaction records, attachment download):

* the audit append fails: a real AuditLog that writes its row and then raises,
  injected into the service as the read test does;
* the append succeeds and the COMMIT after it fails: the database refuses the
  transaction at commit (a deferred foreign key that every new audit entry
  breaks), on whatever path the operation commits by.

Either way the caller gets an error and no plaintext, and the log holds nothing
new. Each case then runs the same operation again without the failure and sees
its plaintext, so the failure, not a refusal of some other kind, is what kept
the content in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from audit.errors import AuditWriteFailed
from audit.events import Actor
from tests.auditlog import failing_log
from tests.factories import archive

NAME = "王小明"  # identity, from tests.factories.archive
OLD_MOBILE = "13800138000"  # contact, replaced below: only its history holds it
NOTE = "回访：客户同意续约"
PAYLOAD = b"%PDF-1.4 signed contract " + bytes(range(256)) * 64
SALES = Actor("zhang.wei", "salesperson")


@dataclass
class Vaulted:
    """An archive with content in every place an operation can take it from."""

    client: TestClient
    services: Any
    headers: dict[str, str]
    archive_no: str
    attachment: str
    export_request: str


@pytest.fixture
def vaulted(client: TestClient, login: Callable[[str], dict[str, str]]) -> Vaulted:
    h = login("zhang.wei")
    body = archive()
    body.pop("owner", None)
    r = client.post("/customers", json=body, headers=h)
    assert r.status_code == 201, r.text
    no = r.json()["archive"]["archive_no"]
    r = client.patch(
        f"/customers/{no}", json={"profile": {"mobile_phone": "139 0000 1111"}}, headers=h
    )
    assert r.status_code == 200, r.text
    r = client.post(
        f"/customers/{no}/interactions",
        json={"occurred_on": "2026-01-05", "channel": "revisit", "text": NOTE},
        headers=h,
    )
    assert r.status_code == 201, r.text
    r = client.post(
        f"/customers/{no}/attachments",
        headers=h,
        files={"file": ("合同.pdf", PAYLOAD, "application/pdf")},
    )
    assert r.status_code == 201, r.text
    uid = r.json()["uid"]
    r = client.post(
        "/requests",
        json={
            "kind": "copy",
            "archives": [no],
            "groups": ["identity", "contact"],
            "purpose": "contract_follow_up",
            "reason": "合同附件",
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    request = r.json()["id"]
    r = client.post(f"/requests/{request}/approve", json={}, headers=login("zhao.lei"))
    assert r.status_code == 200, r.text
    return Vaulted(client, client.app.state.services, h, no, uid, request)


@dataclass(frozen=True)
class Outcome:
    """What the caller got: an HTTP answer, or the exception a service call raised."""

    status: int | None
    problem: str | None
    content: bytes
    error: Exception | None = None


def _http(response: Any) -> Outcome:
    problem = None
    if response.headers.get("content-type", "").startswith("application/problem+json"):
        problem = response.json()["type"].rsplit(":", 1)[-1]
    return Outcome(response.status_code, problem, response.content)


def _read(v: Vaulted) -> Outcome:
    return _http(
        v.client.get(f"/customers/{v.archive_no}?groups=identity,contact", headers=v.headers)
    )


def _export(v: Vaulted) -> Outcome:
    return _http(v.client.post("/exports", json={"request": v.export_request}, headers=v.headers))


def _interactions(v: Vaulted) -> Outcome:
    return _http(v.client.get(f"/customers/{v.archive_no}/interactions", headers=v.headers))


def _download(v: Vaulted) -> Outcome:
    url = f"/customers/{v.archive_no}/attachments/{v.attachment}"
    return _http(v.client.get(url, headers=v.headers))


def _history(v: Vaulted) -> Outcome:
    """History has no route: the service call is the way out, and its result the content."""
    try:
        got = v.services.store.reader.history(v.archive_no, "contact", actor=SALES)
    except Exception as exc:  # noqa: BLE001 - the outcome under test is whatever it raises
        return Outcome(None, None, b"", exc)
    return Outcome(None, None, repr(got).encode())


# operation, and the plaintext it returns when it succeeds
OPERATIONS: dict[str, tuple[Callable[[Vaulted], Outcome], bytes]] = {
    "read": (_read, NAME.encode()),
    "export": (_export, NAME.encode()),
    "history": (_history, OLD_MOBILE.encode()),
    "interactions": (_interactions, NOTE.encode()),
    "download": (_download, PAYLOAD[:64]),
}
PLAINTEXT = [NAME.encode(), OLD_MOBILE.encode(), b"13900001111", NOTE.encode(), PAYLOAD[:64]]


def _assert_no_plaintext(got: Outcome) -> None:
    for secret in PLAINTEXT:
        assert secret not in got.content
        assert got.error is None or secret.decode("utf-8", "replace") not in str(got.error)


@contextmanager
def _failing_append(v: Vaulted) -> Iterator[None]:
    """Every holder of the audit log (the store, its collaborators, the services) gets
    the failing one, so whichever appends the entry, it fails."""
    services = v.services
    holders = [services, services.store, services.reads, services.acts]
    holders += [c for c in vars(services.store).values() if hasattr(c, "audit")]
    real = [(h, h.audit) for h in holders if hasattr(h, "audit")]
    failing = failing_log(services.vault)
    for holder, _ in real:
        holder.audit = failing
    try:
        yield
    finally:
        for holder, log in real:
            holder.audit = log


@contextmanager
def _failing_commit(engine: sa.Engine) -> Iterator[None]:
    """Every transaction that appends an audit entry fails at COMMIT, after the append.

    Each new entry inserts a row whose foreign key points nowhere; the key is
    checked only at commit (DEFERRABLE INITIALLY DEFERRED), so the append and
    everything after it succeed and the commit is refused.
    """
    sqlite = engine.dialect.name == "sqlite"
    # The table each new entry is first written to: the chain on SQLite, the queue on PostgreSQL.
    table = "audit_entry" if sqlite else "audit_queue"
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE commit_target (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql(
            "CREATE TABLE commit_breaker (ref INTEGER REFERENCES commit_target (id) "
            "DEFERRABLE INITIALLY DEFERRED)"
        )
        if sqlite:
            conn.exec_driver_sql(
                "CREATE TRIGGER break_commit AFTER INSERT ON audit_entry "
                "BEGIN INSERT INTO commit_breaker VALUES (1); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION break_commit() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN INSERT INTO commit_breaker VALUES (1); RETURN NULL; END $$"
            )
            conn.exec_driver_sql(
                f"CREATE TRIGGER break_commit AFTER INSERT ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION break_commit()"
            )
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER break_commit" + ("" if sqlite else f" ON {table}"))
            if not sqlite:
                conn.exec_driver_sql("DROP FUNCTION break_commit()")
            conn.exec_driver_sql("DROP TABLE commit_breaker")
            conn.exec_driver_sql("DROP TABLE commit_target")


def _entry_is_its_own_statement(v: Vaulted, name: str) -> bool:
    """On PostgreSQL the read path writes its entry as a statement of its own, durable when
    it returns (``foundation.rawsql.raw_autocommit``): no transaction to take it back."""
    return name == "read" and v.services.engine.dialect.name == "postgresql"


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_a_failing_audit_append_releases_no_content(vaulted: Vaulted, name: str) -> None:
    operation, plaintext = OPERATIONS[name]
    head = vaulted.services.audit.head()
    with _failing_append(vaulted):
        got = operation(vaulted)
    if got.error is not None:
        assert isinstance(got.error, AuditWriteFailed)
    else:
        assert (got.status, got.problem) == (503, "audit-write-failed")
    _assert_no_plaintext(got)
    # The failing log's row rolled back; or, written by a statement of its own, it stands
    # as the record of an attempt that released nothing.
    stood = 1 if _entry_is_its_own_statement(vaulted, name) else 0
    assert vaulted.services.audit.head() == head + stood
    again = operation(vaulted)  # the same operation, audited: it does release content
    assert again.error is None and plaintext in again.content
    assert vaulted.services.audit.head() == head + stood + 1


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_a_commit_that_fails_after_the_append_releases_no_content(
    vaulted: Vaulted, name: str
) -> None:
    operation, plaintext = OPERATIONS[name]
    engine = vaulted.services.engine
    head = vaulted.services.audit.head()
    with _failing_commit(engine):
        got = operation(vaulted)
    if got.error is not None:
        assert isinstance(got.error, sa.exc.IntegrityError)
    elif _entry_is_its_own_statement(vaulted, name):  # the entry's own commit is what failed
        assert (got.status, got.problem) == (503, "audit-write-failed")
    else:
        assert (got.status, got.problem) == (500, "database-error")
    _assert_no_plaintext(got)
    assert vaulted.services.audit.head() == head  # the appended entry went with the commit
    again = operation(vaulted)
    assert again.error is None and plaintext in again.content
    assert vaulted.services.audit.head() == head + 1


def test_a_database_failure_during_the_decision_is_not_recorded_as_a_refusal(
    vaulted: Vaulted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database failing under the decision (a lost connection) decided nothing: the
    read answers 503 with no content, and the log gains no entry calling it a refusal."""
    audit = vaulted.services.audit
    before = audit.query(limit=1)[0].seq

    def lost(*_a: Any, **_k: Any) -> None:
        raise sa.exc.OperationalError("SELECT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(vaulted.services.reads.policy, "sync", lost)
    got = _read(vaulted)
    monkeypatch.undo()
    # Named for what failed (it used to be taken for a refusal, whose entry then failed).
    assert (got.status, got.problem) == (503, "database-unavailable")
    _assert_no_plaintext(got)
    assert [r for r in audit.query(limit=5) if r.seq > before] == []
    again = _read(vaulted)
    assert again.status == 200 and NAME.encode() in again.content
