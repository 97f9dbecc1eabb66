"""Canary: a realistic day of requests leaves no customer value in the service's logs.

An archive is created with distinctive values, searched for (GET with the value in
the query string, and POST), read (the fast path and the route), updated, refused
to someone else, exported, and poked with bad input that carries the values; every
line the service logs at DEBUG level is captured through the JSON formatter. None
of the values may appear, in any spelling the requests used. The capture is shown
to work: every request's id is in an access line.
"""

from __future__ import annotations

import io
import json
import logging

from api.logging_setup import JsonFormatter
from tests.api.test_copies import COPY
from tests.api.test_workflow import _approve, _file
from tests.factories import archive
from vault.formats import id_check_char

NAME = "金丝雀卡纳瑞"
MOBILE = "13987650417"
ID17 = "44030519880611083"
ID_NUMBER = ID17 + id_check_char(ID17)
ADDRESS = "深圳市金丝雀路77号canary"
NOTES = "canary-notes-qz81 备注金丝雀"
NEW_NOTES = "canary-notes-updated-xv27"
CANARIES = (NAME, MOBILE, "139 8765 0417", ID_NUMBER, ADDRESS, NOTES, NEW_NOTES, "qz81", "xv27")


def _capture() -> tuple[logging.Handler, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.DEBUG)
    # The test's own HTTP client logs the URLs it calls: that is the client, not the server.
    handler.addFilter(lambda record: not record.name.startswith(("httpx", "httpcore")))
    return handler, out


def test_no_customer_value_reaches_the_logs(client, login) -> None:
    handler, out = _capture()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    ids: list[str] = []

    def seen(r):
        ids.append(r.headers["x-request-id"])
        return r

    try:
        zhang = login("zhang.wei")
        body = archive(
            profile={
                "name": NAME,
                "mobile_phone": MOBILE,
                "id_number": ID_NUMBER,
                "mailing_address": ADDRESS,
                "notes": NOTES,
            }
        )
        body.pop("owner")
        created = seen(client.post("/customers", json=body, headers=zhang))
        assert created.status_code == 201, created.text
        no = created.json()["archive"]["archive_no"]
        for params in ({"mobile": "139 8765 0417"}, {"id_number": ID_NUMBER}, {"name": NAME}):
            found = seen(client.get("/customers/search", params=params, headers=zhang))
            assert [a["archive_no"] for a in found.json()["items"]] == [no], params
        found = seen(client.post("/customers/search", json={"mobile": MOBILE}, headers=zhang))
        assert found.json()["total"] == 1
        read = seen(client.get(f"/customers/{no}", headers=zhang))  # the fast path
        assert read.status_code == 200
        groups = "identity,contact,credentials,whereabouts,notes"
        read = seen(client.get(f"/customers/{no}", params={"groups": groups}, headers=zhang))
        assert read.status_code == 200 and ID_NUMBER in read.text and NOTES in read.text
        patched = seen(
            client.patch(f"/customers/{no}", json={"profile": {"notes": NEW_NOTES}}, headers=zhang)
        )
        assert patched.status_code == 200, patched.text
        refused = seen(client.get(f"/customers/{no}", headers=login("li.na")))
        assert refused.status_code == 403
        # Bad input carrying the values: in a query string, in a body, in a path, in a header.
        bad = seen(client.get("/customers/search", params={"mobile": NAME}, headers=zhang))
        assert bad.status_code == 422
        bad = seen(
            client.post(
                "/customers", json={**body, "profile": {"mobile_phone": NAME}}, headers=zhang
            )
        )
        assert bad.status_code == 422
        assert seen(client.get(f"/customers/{MOBILE}/{NAME}", headers=zhang)).status_code == 404
        r = seen(client.get("/healthz", headers={"X-Request-ID": f"{MOBILE}-{ID_NUMBER}x" * 3}))
        assert r.status_code == 200
        wrong = seen(client.post("/auth/token", data={"username": MOBILE, "password": NAME}))
        assert wrong.status_code == 401
        # An export of the archive, under an approved copy request.
        req = _file(client, zhang, archives=[no], format="json", copies=1, **COPY)
        _approve(client, login("zhao.lei"), req["id"])
        exported = seen(client.post("/exports", json={"request": req["id"]}, headers=zhang))
        assert exported.status_code == 200 and NAME in exported.text
        logging.getLogger("archive_vault.test").debug("capture still attached")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)

    text = out.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    access = {x.get("request_id") for x in lines if x["logger"] == "archive_vault.access"}
    assert set(ids) <= access, "the capture missed requests: a canary test that sees nothing"
    assert lines[-1]["message"] == "capture still attached"
    leaked = [c for c in CANARIES if c in text or json.dumps(c)[1:-1] in text]
    assert not leaked, f"customer values in the logs: {leaked}"
