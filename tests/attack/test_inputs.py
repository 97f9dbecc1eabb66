"""Bad input on the new request search: a clear 4xx, never a 500."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "query",
    ["from=9999-12-31T23:59:59-14:00", "to=0001-01-01T00:00:00%2B14:00"],
)
def test_a_time_at_the_edge_of_the_calendar_is_a_4xx(client, login, query) -> None:
    """UTCDateTime converts the filter to UTC while binding it; a time that leaves the
    calendar there raises OverflowError and the search answers 500."""
    r = client.get(f"/requests?role=all&{query}", headers=login("qian.audit"))
    assert 400 <= r.status_code < 500, r.text
