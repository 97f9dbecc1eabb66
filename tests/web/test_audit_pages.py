"""Compliance's audit pages: search (filters in Beijing time), one entry's proof, the bundle."""

from __future__ import annotations

import base64
import json
import re

from audit.merkle import verify_inclusion
from tests.web.officer_setup import new_archive


def test_audit_search_by_actor_and_archive(browser, client, login) -> None:
    no = new_archive(client, login("zhang.wei"))
    other = new_archive(client, login("zhang.wei"))
    b = browser("qian.audit")
    page = b.get("/ui/audit")
    assert page.status_code == 200, page.text
    assert "<code>" in page.text  # the newest signed checkpoint's root
    by_actor = b.get("/ui/audit", params={"actor": "zhang.wei"}).text
    rows = re.findall(
        r'<tr data-seq="(\d+)">\s*<td><a[^>]*>\d+</a></td>\s*<td>[^<]*</td>\s*<td>([^ <]+)',
        by_actor,
    )
    assert rows and {actor for _, actor in rows} == {"zhang.wei"}
    by_archive = b.get("/ui/audit", params={"archive": no}).text
    assert no in by_archive and other not in by_archive
    # the time window is Beijing time: a window that ended before the archives were filed
    early = b.get("/ui/audit", params={"archive": no, "to": "2000-01-01T08:00"}).text
    assert "data-seq" not in early
    # and the search itself is audited, its filters taken to UTC
    entry = client.get(
        "/audit?actor=qian.audit&action=audit:read", headers=login("qian.audit")
    ).json()["items"][0]
    assert entry["detail"]["endpoint"] == "query"
    assert entry["detail"]["filters"] == {"archive": no, "until": "2000-01-01T00:00:00+00:00"}


def test_audit_bad_filters_are_422_pages(browser) -> None:
    b = browser("qian.audit")
    for params in (
        {"archive": "KH-12"},
        {"outcome": "maybe"},
        {"action": "archive:eat"},
        {"from": "yesterday"},
        {"offset": "-1"},
    ):
        r = b.get("/ui/audit", params=params)
        assert r.status_code == 422, (params, r.status_code)
        assert "Traceback" not in r.text and "<h1>" in r.text


def test_one_entry_with_its_proof(browser, client, login) -> None:
    no = new_archive(client, login("zhang.wei"))
    b = browser("qian.audit")
    html = b.get("/ui/audit", params={"archive": no}).text
    seq = int(re.search(r'data-seq="(\d+)"', html).group(1))
    page = b.get(f"/ui/audit/{seq}")
    assert page.status_code == 200, page.text
    assert no in page.text
    # the proof shown leads from the entry's hash to the signed root shown
    html = page.text
    size = int(re.search(r'data-tree-size="(\d+)"', html).group(1))
    proof_html = html.split('class="proof"', 1)[1].split("</ol>", 1)[0]
    proof = [
        base64.b64decode(p) for p in re.findall(r'<code class="wrap">([^<]+)</code>', proof_html)
    ]
    facts = re.findall(r'<code class="wrap">([^<]+)</code>', html.split('class="proof"', 1)[0])
    entry_hash, root = facts[-2], facts[-1]
    verify_inclusion(seq - 1, size, bytes.fromhex(entry_hash), proof, base64.b64decode(root))
    api = client.get(f"/audit/proof/{seq}", headers=login("qian.audit")).json()
    assert api["tree_size"] >= size
    assert b.get("/ui/audit/999999").status_code == 404
    assert b.get("/ui/audit/0").status_code == 422


def test_the_bundle_is_a_streamed_attachment(browser, client, login) -> None:
    new_archive(client, login("zhang.wei"))
    r = browser("qian.audit").get("/ui/audit/bundle")
    assert r.status_code == 200
    assert r.headers["content-disposition"].startswith("attachment;")
    assert r.headers["cache-control"] == "no-store"
    bundle = json.loads(r.content)
    assert bundle["entries"] and bundle["checkpoints"]
    assert bundle["entries"][-1]["detail"]["endpoint"] == "bundle"
    log = client.get("/audit?action=audit:read", headers=login("qian.audit")).json()["items"]
    assert any(e["detail"].get("endpoint") == "bundle" for e in log)


def test_who_may_not_read_the_audit(browser, client, login) -> None:
    no = new_archive(client, login("zhang.wei"))
    for who in ("zhang.wei", "admin", "chen.jing"):
        b = browser(who)
        for url in ("/ui/audit", f"/ui/audit?archive={no}", "/ui/audit/1", "/ui/audit/bundle"):
            r = b.get(url)
            assert r.status_code == 403, (who, url, r.status_code)
            assert "data-seq" not in r.text and "entries" not in r.text
    denied = client.get(
        "/audit?action=audit:read&outcome=denied", headers=login("qian.audit")
    ).json()["items"]
    assert {e["actor"] for e in denied} >= {"zhang.wei", "admin", "chen.jing"}
    nobody = browser()
    assert nobody.get("/ui/audit").status_code == 303
    assert nobody.get("/ui/audit/bundle").status_code == 303


def test_the_status_is_the_last_verification_and_verifying_again_is_a_button(browser) -> None:
    b = browser("qian.audit")
    page = b.get("/ui/audit")
    assert page.status_code == 200 and "尚未对整个日志进行过校验" in page.text
    r = b.post("/ui/audit/verify")
    assert r.status_code == 303
    page = b.get("/ui/audit")
    assert "最近一次校验" in page.text and "qian.audit" in page.text
    assert b.post("/ui/audit/verify", csrf=False).status_code == 403
    sales = browser("zhang.wei")
    assert sales.post("/ui/audit/verify").status_code == 403
