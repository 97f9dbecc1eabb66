"""A date at the calendar's edge typed into a form is the typist's mistake: a 4xx page.

``0001-01-01T00:00:00`` typed without a zone is taken as Beijing time (UTC+8),
which has no UTC form: the leak form's ``noticed_at`` and the archive form's
``consent.at`` then overflow while being converted (in ``vault.records.
parse_datetime`` and when the leak case is bound to the database) and the
page answers 500. The API's ``POST /leaks`` and ``POST /customers`` share the
fault (same inputs, with or without ``+08:00``).
"""

from __future__ import annotations

import pytest

EDGE = "0001-01-01T00:00:00"


def test_the_leak_form_refuses_a_time_before_the_calendar(browser) -> None:
    b = browser("li.na")
    b.get("/ui/leaks/new")
    r = b.post("/ui/leaks/new", {"what_seen": "a list on a desk", "noticed_at": EDGE})
    assert r.status_code == 422, r.status_code


@pytest.mark.parametrize("at", [EDGE, EDGE + "+08:00"])
def test_the_archive_form_refuses_a_consent_time_before_the_calendar(browser, at) -> None:
    b = browser("zhang.wei")
    b.get("/ui/clients/new")
    r = b.post(
        "/ui/clients/new",
        {
            "category": "general",
            "grade": "C",
            "classification": "internal",
            "p.name": "王小明",
            "consent.notice": "隐私告知书 v3",
            "consent.at": at,
            "consent.channel": "书面",
            "consent.groups": "identity",
        },
    )
    assert r.status_code == 422, r.status_code
