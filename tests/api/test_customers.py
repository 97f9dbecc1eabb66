"""Customers over HTTP: the salesperson's own clients, refusals, bad input, audit."""

from __future__ import annotations

import re
import threading

import pytest
import sqlalchemy as sa

from foundation import rawsql
from tests.auditlog import failing_log
from tests.factories import archive, consent


def _new(client, headers, **over) -> str:
    body = archive(**over)
    body.pop("owner", None)
    r = client.post("/customers", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["archive"]["archive_no"]


def test_salesperson_creates_and_reads_own_client(client, login) -> None:
    h = login("zhang.wei")
    no = _new(client, h)
    r = client.get(f"/customers/{no}", params={"groups": "identity,contact"}, headers=h)
    assert r.status_code == 200
    body = r.json()
    assert body["content"]["contact"]["mobile_phone"] == "13800138000"
    assert body["decision"]["basis"] == "owner"
    assert body["archive"]["owner"] == "zhang.wei"
    log = client.get(f"/audit?archive={no}", headers=login("qian.audit")).json()["items"]
    assert [e["action"] for e in log][:2] == ["archive:read", "archive:create"]
    assert log[0]["groups"] == ["identity", "contact"] and log[0]["actor"] == "zhang.wei"


def test_another_salesperson_is_refused_and_told_what_to_do(client, login) -> None:
    no = _new(client, login("zhang.wei"))
    r = client.get(f"/customers/{no}", headers=login("li.na"))
    assert r.status_code == 403
    problem = r.json()
    assert problem["type"] == "urn:archive-vault:access-denied"
    assert "view request" in problem["detail"]
    assert "13800138000" not in r.text and "王小明" not in r.text
    denied = client.get(f"/audit?archive={no}&outcome=denied", headers=login("qian.audit"))
    assert denied.json()["items"][0]["actor"] == "li.na"


def test_admin_and_compliance_never_read_content(client, login) -> None:
    no = _new(client, login("zhang.wei"))
    for user in ("admin", "qian.audit"):
        r = client.get(f"/customers/{no}", headers=login(user))
        assert r.status_code == 403, user
        assert "13800138000" not in r.text


def test_list_and_search_show_metadata_only(client, login) -> None:
    h = login("zhang.wei")
    no = _new(client, h, classification="secret", custodian="chen.jing")
    listed = client.get("/customers", headers=h).json()
    assert listed["total"] == 1 and listed["items"][0]["remarks"] == "机密"
    assert "profile" not in listed["items"][0]
    # Search shows only what the caller may read: the secret archive is above zhang.wei's
    # clearance, so only the internal one is found.
    mine = _new(client, h)
    found = client.get("/customers/search", params={"mobile": "+86 138 0013 8000"}, headers=h)
    assert [a["archive_no"] for a in found.json()["items"]] == [mine] != [no]
    assert "13800138000" not in found.text
    both = client.get("/customers/search", params={"mobile": "1", "name": "x"}, headers=h)
    assert both.status_code == 400
    bad = client.get("/customers/search", params={"mobile": "12"}, headers=h)
    assert bad.status_code == 422 and "mobile" in bad.json()["detail"]


def test_update_and_history_are_kept(client, login) -> None:
    h = login("zhang.wei")
    no = _new(client, h)
    r = client.patch(
        f"/customers/{no}", json={"profile": {"mobile_phone": "139 0000 1111"}}, headers=h
    )
    assert r.status_code == 200, r.text
    r = client.get(f"/customers/{no}?groups=contact", headers=h)
    assert r.json()["content"]["contact"]["mobile_phone"] == "13900001111"
    r = client.patch(
        f"/customers/{no}", json={"profile": {"health": "高血压"}}, headers=login("li.na")
    )
    assert r.status_code == 403


def test_consent_and_fields_change_together_or_not_at_all(client, login) -> None:
    """A PATCH decides, records the consent and writes the fields in one transaction:
    when the fields are refused, the consent sent with them is not recorded either."""
    h = login("zhang.wei")
    no = _new(client, h, profile={"name": "王小明", "mobile_phone": "13800138000"})
    newer = {**consent(sensitive=[]), "notice": "隐私告知书 v4"}
    r = client.patch(
        f"/customers/{no}", json={"profile": {"health": "高血压"}, "consent": newer}, headers=h
    )
    assert r.status_code == 422 and r.json()["type"] == "urn:archive-vault:consent-missing", r.text
    log = client.get(f"/audit?archive={no}", headers=login("qian.audit")).json()["items"]
    assert "archive:consent-record" not in [e["action"] for e in log]
    r = client.patch(f"/customers/{no}", json={"consent": newer}, headers=h)
    assert r.status_code == 200, r.text
    log = client.get(f"/audit?archive={no}", headers=login("qian.audit")).json()["items"]
    assert log[0]["action"] == "archive:consent-record"


def test_a_refused_update_is_audited_and_changes_nothing(client, login) -> None:
    no = _new(client, login("zhang.wei"))
    r = client.patch(
        f"/customers/{no}",
        json={"profile": {"mobile_phone": "13900001111"}},
        headers=login("li.na"),
    )
    assert r.status_code == 403 and r.json()["type"] == "urn:archive-vault:access-denied"
    denied = client.get(f"/audit?archive={no}&outcome=denied", headers=login("qian.audit"))
    (entry,) = denied.json()["items"]
    assert entry["action"] == "archive:update" and entry["actor"] == "li.na"
    h = login("zhang.wei")
    r = client.get(f"/customers/{no}?groups=contact", headers=h)
    assert r.json()["content"]["contact"]["mobile_phone"] == "13800138000"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"classification": "confidential"}, 422, "validation-failed"),
        ({"profile": {"shoe_size": "42"}}, 422, "validation-failed"),
        ({"profile": {"mobile_phone": 13800138000}}, 422, "validation-failed"),
        ({"colour": "red"}, 422, "validation-failed"),
        ({"classification": "top_secret"}, 422, "validation-failed"),
        ({"profile": {"health": "良好"}, "consent": None}, 422, "consent-missing"),
    ],
)
def test_bad_bodies_get_clear_4xx(client, login, body, status, code) -> None:
    data = archive(**body)
    data.pop("owner", None)
    data = {k: v for k, v in data.items() if v is not None}
    r = client.post("/customers", json=data, headers=login("zhang.wei"))
    assert r.status_code == status, r.text
    assert r.json()["type"] == f"urn:archive-vault:{code}"
    assert "Traceback" not in r.text


def test_malformed_requests(client, login) -> None:
    h = login("zhang.wei")
    r = client.post(
        "/customers", content=b"{nope", headers={**h, "content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["type"] == "urn:archive-vault:malformed-json"
    assert client.get("/customers/KH-1", headers=h).status_code == 422
    assert client.get("/customers/KH-2026-999999", headers=h).status_code == 404
    assert client.get("/customers/KH-2026-999999?groups=gossip", headers=h).status_code == 422
    assert client.delete("/customers", headers=h).status_code == 405
    big = {"profile": {"notes": "x" * (2 * 1024 * 1024)}}
    r = client.post("/customers", json=big, headers=h)
    assert r.status_code == 413 and r.json()["type"] == "urn:archive-vault:payload-too-large"


def test_interactions_and_attachments(client, login) -> None:
    h = login("zhang.wei")
    no = _new(client, h)
    r = client.post(
        f"/customers/{no}/interactions",
        json={"occurred_on": "2026-01-05", "channel": "revisit", "text": "回访：满意"},
        headers=h,
    )
    assert r.status_code == 201
    assert client.get(f"/customers/{no}/interactions", headers=h).json()[0]["text"] == "回访：满意"
    payload = bytes(range(256)) * 600
    r = client.post(
        f"/customers/{no}/attachments",
        headers=h,
        files={"file": ("合同.pdf", payload, "application/pdf")},
    )
    assert r.status_code == 201, r.text
    uid = r.json()["uid"]
    got = client.get(f"/customers/{no}/attachments/{uid}", headers=h)
    assert got.status_code == 200 and got.content == payload
    assert (
        client.get(f"/customers/{no}/attachments/{uid}", headers=login("li.na")).status_code == 403
    )
    assert client.get(f"/customers/{no}/interactions", headers=login("li.na")).status_code == 403


def test_health(client) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_database_unavailable_gives_503_and_no_content(client, login) -> None:
    h = login("zhang.wei")
    no = _new(client, h)
    services = client.app.state.services
    real = services.vault.engine
    dead = sa.create_engine(
        "postgresql+psycopg://nobody@127.0.0.1:9/none", connect_args={"connect_timeout": 1}
    )
    services.vault.engine = services.store.engine = dead
    try:
        r = client.get(f"/customers/{no}", headers=h)
        assert r.status_code == 503, r.text
        assert r.json()["type"] == "urn:archive-vault:database-unavailable"
        assert "13800138000" not in r.text
        assert client.get("/healthz").status_code == 503
    finally:
        services.vault.engine = services.store.engine = real
        dead.dispose()


def test_a_read_on_postgresql_is_three_statements(client, login, backend, monkeypatch) -> None:
    """Principal with the counters, archive with its contacts and the asked groups'
    ciphertext, the queued audit entry: the read sends nothing else to the server."""
    if backend != "postgres":
        pytest.skip("the statement count of the PostgreSQL read")
    h = login("zhang.wei")
    no = _new(client, h)
    assert client.get(f"/customers/{no}?groups=contact", headers=h).status_code == 200
    engine = client.app.state.services.store.engine
    sent: list[tuple[int, str]] = []  # (thread, statement): the signer may run meanwhile

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        sent.append((threading.get_ident(), statement))

    run = rawsql._run  # every raw statement, the prepared INSERT included

    def counted(handle, sql, statement, *, read=False):
        sent.append((threading.get_ident(), sql))
        return run(handle, sql, statement, read=read)

    sa.event.listen(engine, "before_cursor_execute", count)
    monkeypatch.setattr(rawsql, "_run", counted)
    try:
        r = client.get(f"/customers/{no}?groups=contact", headers=h)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert r.status_code == 200 and "13800138000" in r.text
    (reader,) = {t for t, sql in sent if sql.startswith("INSERT INTO audit_queue")}
    mine = [sql for t, sql in sent if t == reader]
    first = next(i for i, sql in enumerate(mine) if "app_user" in sql)
    last = next(i for i, sql in enumerate(mine) if sql.startswith("INSERT INTO audit_queue"))
    assert last - first + 1 == 3, mine[first : last + 1]
    assert "policy_counter" in mine[first] and "archive_content" in mine[first + 1]


def test_search_opens_only_candidates_the_caller_may_read_in_clear(
    client, login, monkeypatch
) -> None:
    """Each candidate's read decision comes before it is opened: another salesperson's
    search decrypts nothing and finds nothing; the owner's opens only the searched group."""
    h = login("zhang.wei")
    no = _new(client, h)
    services = client.app.state.services
    opened: list[tuple[str, list[str]]] = []
    real = services.store.reader.decrypt

    def spy(session, archive, groups):
        opened.append((archive.archive_no, list(groups)))
        return real(session, archive, groups)

    monkeypatch.setattr(services.store.reader, "decrypt", spy)
    r = client.post("/customers/search", json={"mobile": "13800138000"}, headers=login("li.na"))
    assert r.status_code == 200, r.text
    assert r.json()["items"] == [] and opened == []
    r = client.post("/customers/search", json={"mobile": "13800138000"}, headers=h)
    assert [i["archive_no"] for i in r.json()["items"]] == [no]
    assert opened == [(no, ["contact"])]


def test_search_by_post_keeps_the_value_out_of_urls(client, login) -> None:
    h = login("zhang.wei")
    no = _new(client, h)
    r = client.post("/customers/search", json={"mobile": "138 0013 8000"}, headers=h)
    assert r.status_code == 200 and [a["archive_no"] for a in r.json()["items"]] == [no]
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert client.post("/customers/search", json={"shoe": "42"}, headers=h).status_code == 422


def test_a_failing_audit_append_returns_no_content(client, login) -> None:
    """Fail-closed end to end: the real AuditLog fails after writing its row; nothing leaks."""

    h = login("zhang.wei")
    no = _new(client, h)
    services = client.app.state.services
    reader = services.store.reader  # the collaborator that appends a read's entry
    real = reader.audit
    reader.audit = failing_log(services.vault)
    try:
        r = client.get(f"/customers/{no}?groups=contact,identity", headers=h)
    finally:
        reader.audit = real
    assert r.status_code == 503, r.text
    assert r.json()["type"] == "urn:archive-vault:audit-write-failed"
    assert "13800138000" not in r.text and "王小明" not in r.text
    # and the failed attempt left no entry behind (the transaction rolled back); on
    # PostgreSQL the read's entry is a statement of its own, so the failing log's row
    # stands as the record of an attempt that released nothing
    log = client.get(f"/audit?archive={no}&action=archive:read", headers=login("qian.audit"))
    stood = 1 if services.engine.dialect.name == "postgresql" else 0
    assert len(log.json()["items"]) == stood


def test_a_salesperson_cannot_exhaust_the_archive_numbers(client, login) -> None:
    """A number chosen by the caller moves the year's counter: only the vault (or an
    information officer filing an existing paper file) chooses one."""
    sales = login("zhang.wei")
    r = client.post("/customers", json=archive(archive_no="KH-2026-999999"), headers=sales)
    assert r.status_code == 403 and "information officer" in r.json()["detail"]
    r = client.post("/customers", json=archive(), headers=sales)
    assert r.status_code == 201, r.text
    assert r.json()["archive"]["archive_no"] != "KH-2026-999999"
    log = client.get("/audit?action=archive:create", headers=login("qian.audit")).json()
    assert not any("KH-2026-999999" in (e.get("archives") or []) for e in log["items"])


MASK_ONLY = re.compile(r"王\*+")


def test_the_customer_list_carries_masked_names_only(client, login, api_vault) -> None:
    """The owner sees the surname and mask characters, never the name: in the list, the
    search, the list's audit entry and the database. Those the list permission alone lets
    see the line (another salesperson, compliance) see no masked name at all: it is
    derived from content they may not read."""
    h = login("zhang.wei")
    no = _new(client, h)  # 王小明: three characters
    other = _new(client, h, profile={"mobile_phone": "13900139000"})  # no name yet
    r = client.get("/customers", headers=h)
    assert r.status_code == 200
    names = {a["archive_no"]: a["masked_name"] for a in r.json()["items"]}
    assert names == {no: "王**", other: None}
    assert MASK_ONLY.fullmatch(names[no]) and "王小明" not in r.text and "小明" not in r.text
    for user in ("li.na", "qian.audit"):
        r = client.get("/customers", headers=login(user))
        assert r.status_code == 200, user
        names = {a["archive_no"]: a["masked_name"] for a in r.json()["items"]}
        assert names == {no: None, other: None}, user
        assert "王" not in r.text, user
    found = client.post("/customers/search", json={"mobile": "13800138000"}, headers=h).json()
    assert [a["masked_name"] for a in found["items"]] == ["王**"]
    log = client.get("/audit", params={"action": "archive:list"}, headers=login("qian.audit"))
    assert log.status_code == 200 and log.json()["items"] and "王" not in log.text
    with api_vault.engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT masked_name_ct FROM archive WHERE archive_no = :no"), {"no": no}
        ).scalar_one()
    assert "王**".encode() not in bytes(stored) and "王小明".encode() not in bytes(stored)


def test_the_list_follows_a_change_of_the_name(client, login) -> None:
    h = login("zhang.wei")
    no = _new(client, h)
    r = client.patch(f"/customers/{no}", json={"profile": {"name": "司马相如"}}, headers=h)
    assert r.status_code == 200, r.text
    (item,) = client.get("/customers", headers=h).json()["items"]
    assert item["masked_name"] == "司***"
    refused = client.patch(
        f"/customers/{no}", json={"profile": {"name": "李四"}}, headers=login("li.na")
    )
    assert refused.status_code == 403
    (item,) = client.get("/customers", headers=h).json()["items"]
    assert item["masked_name"] == "司***"
