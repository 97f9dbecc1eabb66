"""A refused request's answer never repeats what was sent.

What a caller sends to /customers is customer data (a mobile number, a name, a
note); a 422 that quoted it would copy it into every log, proxy and error
tracker the answer passes through. The answers here say where and what was
wrong (``loc``, ``msg``, ``type``) and nothing of the value: checked on body
fields, query parameters and path parameters, for requests that the schema
refuses (FastAPI's validation) and for values only the vault's own rules refuse.
"""

from __future__ import annotations

import json

import pytest

from tests.factories import archive

CANARY = "13912345678"  # a well-formed mobile number: what must not come back
LONG = "甄士隐" + "7" * 20_000  # over every text limit, and recognisable


def _body(**over: object) -> dict:
    data = archive(**over)
    data.pop("owner", None)
    return data


def _refused_quietly(r, *secrets: str, path_echo: bool = False) -> dict:
    """A 422 problem whose body holds none of ``secrets``.

    ``path_echo``: the problem's ``instance`` is the request path, which names the
    resource (an archive number, an attachment id) by design; only there may a
    value from the path appear, never in ``detail`` or ``errors``."""
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["type"] == "urn:archive-vault:validation-failed", problem
    shown = {k: v for k, v in problem.items() if not (path_echo and k == "instance")}
    text = json.dumps(shown, ensure_ascii=False)
    for secret in secrets:
        assert secret not in text, f"{secret[:20]!r} echoed in {text[:300]}"
        if not path_echo:
            assert secret not in r.text
    for error in problem.get("errors", []):
        assert set(error) <= {"loc", "msg", "type"}, error  # no "input", no "ctx"
    return problem


@pytest.mark.parametrize(
    ("over", "secret"),
    [
        ({"department": "销售部" + CANARY * 6}, CANARY),  # over 64 characters
        ({"custodian": f"x{CANARY}@example.com"}, f"x{CANARY}@example.com"),  # not a username
        ({"contacts": [f"{CANARY}!"]}, f"{CANARY}!"),
        ({"retention_until": f"{CANARY}-01-01"}, f"{CANARY}-01-01"),
        ({"profile": {"notes": LONG}}, LONG[:40]),  # over the schema's 20,000 characters
        ({"profile": {"mobile_phone": 13912345678}}, CANARY),  # a number, not a string
        (
            {"consent": {"notice": "告知书" + CANARY * 6, "at": "2026-01-02", "channel": "书面"}},
            CANARY,
        ),
        ({"classification": CANARY}, CANARY),
    ],
)
def test_schema_refusals_of_a_new_archive_do_not_echo(client, login, over, secret) -> None:
    r = client.post("/customers", json=_body(**over), headers=login("zhang.wei"))
    problem = _refused_quietly(r, secret)
    assert problem["errors"] and problem["errors"][0]["loc"][0] == "body"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mobile_phone", "1391234567"),  # one digit short
        ("mobile_phone", f"+1 {CANARY}"),
        ("id_number", "110105194912310021"),  # wrong check character
        ("name", "甄" * 41),
        ("licence_plate", f"粤{CANARY}"),
    ],
)
def test_vault_refusals_of_a_field_do_not_echo(client, login, field, value) -> None:
    h = login("zhang.wei")
    r = client.post("/customers", json=_body(profile={field: value}), headers=h)
    assert field in _refused_quietly(r, value)["detail"]  # where, not what


def test_patch_refusals_do_not_echo(client, login) -> None:
    h = login("zhang.wei")
    r = client.post("/customers", json=_body(), headers=h)
    assert r.status_code == 201, r.text
    no = r.json()["archive"]["archive_no"]
    for profile, secret in [
        ({"mobile_phone": f"{CANARY}0"}, f"{CANARY}0"),  # vault rule
        ({"notes": LONG}, LONG[:40]),  # schema limit
        ({"mobile_phone": 13912345678}, CANARY),  # schema type
    ]:
        _refused_quietly(
            client.patch(f"/customers/{no}", json={"profile": profile}, headers=h), secret
        )
    r = client.patch(
        f"/customers/{no}",
        json={"consent": {"notice": "n" + CANARY * 6, "at": "2026-01-02", "channel": "书面"}},
        headers=h,
    )
    _refused_quietly(r, CANARY)
    # Nothing of it was stored either.
    r = client.get(f"/customers/{no}", params={"groups": "contact,notes"}, headers=h)
    assert r.status_code == 200 and CANARY not in r.text


@pytest.mark.parametrize(
    ("path", "params", "secret"),
    [
        ("/customers/search", {"mobile": CANARY * 4}, CANARY),  # over 40 characters
        ("/customers/search", {"plate": "粤" + CANARY * 2}, CANARY),  # over 20
        ("/customers", {"owner": f"{CANARY}@x"}, f"{CANARY}@x"),
        ("/customers", {"department": "部" + CANARY * 6}, CANARY),  # over 64
        ("/customers", {"department": f"部\x07{CANARY}"}, CANARY),  # a control character
        ("/customers", {"retention_before": f"{CANARY}-13-45"}, f"{CANARY}-13-45"),
        ("/customers", {"limit": CANARY}, CANARY),
        ("/customers", {"grade": CANARY}, CANARY),
    ],
)
def test_query_parameter_refusals_do_not_echo(client, login, path, params, secret) -> None:
    r = client.get(path, params=params, headers=login("zhang.wei"))
    problem = _refused_quietly(r, secret)
    assert problem["errors"][0]["loc"][0] == "query"


def test_search_body_refusals_do_not_echo(client, login) -> None:
    r = client.post("/customers/search", json={"mobile": CANARY * 4}, headers=login("zhang.wei"))
    _refused_quietly(r, CANARY)


def test_read_refusals_do_not_echo(client, login) -> None:
    """The read has a fast path ahead of the route; its refusals follow the same rule."""
    h = login("zhang.wei")
    r = client.post("/customers", json=_body(), headers=h)
    no = r.json()["archive"]["archive_no"]
    _refused_quietly(
        client.get(f"/customers/{no}", params={"groups": CANARY * 40}, headers=h), CANARY
    )


def test_an_unknown_group_name_is_not_echoed(client, login) -> None:
    h = login("zhang.wei")
    r = client.post("/customers", json=_body(), headers=h)
    no = r.json()["archive"]["archive_no"]
    r = client.get(f"/customers/{no}", params={"groups": f"contact,{CANARY}"}, headers=h)
    _refused_quietly(r, CANARY)


@pytest.mark.parametrize(
    "path",
    [
        f"/customers/KH-{CANARY}",
        f"/customers/KH-2026-{CANARY}/interactions",
        f"/customers/KH-2026-000001/attachments/{CANARY}",
    ],
)
def test_path_parameter_refusals_do_not_echo(client, login, path) -> None:
    problem = _refused_quietly(client.get(path, headers=login("zhang.wei")), CANARY, path_echo=True)
    assert problem["instance"] == path  # the path names the resource, by design
