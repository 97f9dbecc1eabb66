"""A salesperson's own requests, paged and counted by the database."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlmodel import Session

from foundation.db import transaction
from policies.models import AccessRequest
from policies.roles import RequestState
from policies.visibility import requests_for, requests_page
from tests.policies.conftest import T0


def _file(db, wf, who, requester: str, at) -> str:
    with transaction(db) as s:
        return wf.filing.file(
            s,
            who(requester),
            kind="view",
            archives=["A-INT"],
            purpose="contract_follow_up",
            reason="renewal",
            now=at,
        ).uid


def test_pages_follow_the_full_list_and_count_only_ones_own(db, wf, who) -> None:
    for i in range(5):
        _file(db, wf, who, "carol", T0 + timedelta(minutes=i))
    _file(db, wf, who, "bob", T0)  # someone else's: never on carol's pages
    withdrawn = _file(db, wf, who, "carol", T0 + timedelta(hours=1))
    with transaction(db) as s:
        s.execute(
            sa.update(AccessRequest)
            .where(AccessRequest.uid == withdrawn)
            .values(state=RequestState.WITHDRAWN.value)
        )
    with Session(db) as s:
        whole = [r.uid for r in requests_for(s, "carol")]
        pages = [requests_page(s, "carol", state=None, offset=o, limit=2) for o in (0, 2, 4, 6)]
        pending = requests_page(s, "carol", state="pending", offset=0, limit=50)
        none = requests_page(s, "carol", state="expired", offset=0, limit=50)
    assert [r.uid for page, _ in pages for r in page] == whole and len(whole) == 6
    assert {total for _, total in pages} == {6}
    assert pending[1] == 5 and withdrawn not in {r.uid for r in pending[0]}
    assert none == ([], 0)
