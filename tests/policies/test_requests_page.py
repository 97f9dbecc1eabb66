"""A salesperson's own requests, paged and counted by the database."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlmodel import Session

from foundation.db import transaction
from policies.models import AccessRequest, Notification
from policies.roles import RequestState
from policies.visibility import (
    newest_notifications,
    notifications_for,
    request_levels,
    requests_for,
    requests_page,
)
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


def test_markings_come_only_from_ones_own_requests(db, wf, who) -> None:
    """The loans page asks for the levels of the requests its lines name; another
    account's request id among them gives nothing."""
    mine = _file(db, wf, who, "carol", T0)
    theirs = _file(db, wf, who, "bob", T0)
    with Session(db) as s:
        ids = {
            r.uid: r.id
            for r in s.exec(sa.select(AccessRequest).where(AccessRequest.uid.in_([mine, theirs])))
            .scalars()
            .all()
        }
        levels = request_levels(s, "carol", [ids[mine], ids[theirs], None])
    assert levels == {ids[mine]: "internal"}


def test_only_the_newest_notifications_oldest_first(db, wf, who) -> None:
    for i in range(4):
        _file(db, wf, who, "carol", T0 + timedelta(minutes=i))
    with Session(db) as s:
        told = s.exec(sa.select(Notification.recipient)).scalars().all()
        recipient = max(set(told), key=told.count)  # an approver told of every request
        every = notifications_for(s, recipient)
        newest = newest_notifications(s, recipient, 2)
    assert len(every) >= 4
    assert [n.id for n in newest] == [n.id for n in every][-2:]
