"""Times at the edge of the calendar on every search that takes one: a 422 naming the
parameter, never a 500 from a conversion to UTC that leaves the calendar."""

from __future__ import annotations

import pytest

EDGES = ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00%2B14:00"]


@pytest.mark.parametrize("name", ["from", "to"])
@pytest.mark.parametrize("moment", EDGES)
def test_a_request_search_names_the_time_outside_the_calendar(client, login, name, moment):
    r = client.get(f"/requests?role=all&{name}={moment}", headers=login("qian.audit"))
    assert r.status_code == 422, r.text
    assert name in r.text


@pytest.mark.parametrize("name", ["since", "until"])
@pytest.mark.parametrize("moment", EDGES)
def test_an_audit_search_names_the_time_outside_the_calendar(client, login, name, moment):
    r = client.get(f"/audit?{name}={moment}", headers=login("qian.audit"))
    assert r.status_code == 422, r.text
    assert name in r.text


def test_a_time_inside_the_calendar_still_filters(client, login):
    r = client.get(
        "/requests?role=all&from=2000-01-01T00:00:00%2B08:00&to=9999-12-30T00:00:00-14:00",
        headers=login("qian.audit"),
    )
    assert r.status_code == 200, r.text
