"""The grant link store behind Casbin's ``g``: windows to the microsecond, scopes,
replacement, revocation, the sweeper, and the RoleManager interface Casbin calls.

White-box on purpose: a grant counts exactly while its link is in this store and its
window holds, so each operation is pinned on its own (the engine tests cover the rest).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from policies.errors import ConfigError
from policies.grants import NO_ARCHIVE, GrantLink, GrantLinks, scope, to_us

T = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
US = 1  # one microsecond in to_us units


def link(
    uid: str = "G-1",
    *,
    subject: str = "u1",
    archives: tuple[str, ...] = ("A-1",),
    actions: tuple[str, ...] = ("read",),
    groups: frozenset[str] = frozenset({"contact"}),
    start: int | None = None,
    end: int | None = None,
    custodian_signed: bool = False,
) -> GrantLink:
    return GrantLink(
        uid=uid,
        kind="view",
        subject=subject,
        archives=archives,
        actions=actions,
        groups=groups,
        not_before=to_us(T) if start is None else start,
        not_after=to_us(T + timedelta(hours=1)) if end is None else end,
        custodian_signed=custodian_signed,
        purpose="revisit",
        reason="asked",
        request_uid="R-1",
    )


# -- time and scope helpers ---------------------------------------------------------------


def test_to_us_is_exact_epoch_microseconds() -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert to_us(epoch) == 0
    assert to_us(epoch + timedelta(microseconds=1)) == 1
    assert to_us(epoch + timedelta(seconds=1)) == 1_000_000
    assert to_us(epoch + timedelta(days=1)) == 86_400_000_000
    assert to_us(epoch + timedelta(days=2, seconds=3, microseconds=4)) == (
        2 * 86_400_000_000 + 3_000_000 + 4
    )
    assert to_us(epoch - timedelta(microseconds=1)) == -1
    assert to_us(T) == int(T.timestamp()) * 1_000_000


def test_to_us_converts_other_zones_and_refuses_naive_times() -> None:
    plus_one = timezone(timedelta(hours=1))
    assert to_us(datetime(1970, 1, 1, 1, 0, tzinfo=plus_one)) == 0
    with pytest.raises(ValueError) as err:
        to_us(datetime(2025, 1, 1))
    assert str(err.value) == "naive datetimes are refused; pass an aware UTC time"


def test_scope_names() -> None:
    assert scope("A-1", "read") == "A-1/read"
    assert scope("A-1", "read", custodian=False) == "A-1/read"
    assert scope("A-1", "read", custodian=True) == "A-1/read/custodian"
    assert NO_ARCHIVE == "*"


def test_window_is_inclusive_at_not_before_and_exclusive_at_not_after() -> None:
    g = link(start=100, end=200)
    assert not g.active_at(99)
    assert g.active_at(100)
    assert g.active_at(199)
    assert not g.active_at(200)


def test_scopes_per_archive_and_action_with_custodian_twin() -> None:
    plain = link(archives=("A-1", "A-2"), actions=("read", "loan"))
    assert list(plain.scopes()) == ["A-1/read", "A-1/loan", "A-2/read", "A-2/loan"]
    signed = link(archives=("A-1",), actions=("read",), custodian_signed=True)
    assert list(signed.scopes()) == ["A-1/read", "A-1/read/custodian"]
    report = link(archives=(), actions=("report",))
    assert list(report.scopes()) == ["*/report"]


# -- the store ------------------------------------------------------------------------------


def test_put_get_active_and_replacement_moves_the_subject() -> None:
    store = GrantLinks()
    g = link(start=0, end=10)
    store.put(g)
    assert store.get("G-1") is g
    assert len(store) == 1
    assert list(store.links()) == [g]
    assert store.active("u1", "A-1/read", 5) == [g]
    assert store.active("u1", "A-1/loan", 5) == []
    assert store.active("u2", "A-1/read", 5) == []
    # A reassigned loan: same uid, new subject; the old holder loses it at once.
    moved = link(subject="u2", start=0, end=10)
    store.put(moved)
    assert store.get("G-1") is moved
    assert len(store) == 1
    assert store.active("u1", "A-1/read", 5) == []
    assert store.active("u2", "A-1/read", 5) == [moved]
    assert store.get_roles("u1") == []
    assert store.get_users("A-1/read") == ["u2"]


def test_active_filters_by_window_and_orders_latest_ending_first() -> None:
    store = GrantLinks()
    early = link("G-b", start=0, end=10)
    late = link("G-c", start=0, end=20)
    tie = link("G-a", start=0, end=20)
    future = link("G-f", start=15, end=30)
    for g in (early, late, tie, future):
        store.put(g)
    assert [g.uid for g in store.active("u1", "A-1/read", 5)] == ["G-a", "G-c", "G-b"]
    assert [g.uid for g in store.active("u1", "A-1/read", 10)] == ["G-a", "G-c"]
    assert [g.uid for g in store.active("u1", "A-1/read", 15)] == ["G-f", "G-a", "G-c"]
    assert store.active("u1", "A-1/read", 30) == []
    assert store.active("u1", "A-1/read", -1) == []


def test_ended_lists_links_over_at_or_before_the_instant_latest_first() -> None:
    store = GrantLinks()
    for g in (link("G-b", start=0, end=10), link("G-c", start=0, end=20)):
        store.put(g)
    store.put(link("G-a", start=0, end=20))
    assert store.ended("u1", "A-1/read", 9) == []
    assert [g.uid for g in store.ended("u1", "A-1/read", 10)] == ["G-b"]
    assert [g.uid for g in store.ended("u1", "A-1/read", 20)] == ["G-a", "G-c", "G-b"]
    assert store.ended("u1", "A-1/loan", 20) == []
    assert store.ended("u2", "A-1/read", 20) == []


def test_remove_drops_every_scope_and_keeps_other_grants() -> None:
    store = GrantLinks()
    a = link("G-a", custodian_signed=True)
    b = link("G-b")
    store.put(a)
    store.put(b)
    at = to_us(T)
    assert store.remove("G-a") is True
    assert store.remove("G-a") is False
    assert store.remove("nope") is False
    assert store.get("G-a") is None
    assert store.active("u1", "A-1/read", at) == [b]
    # The custodian scope only G-a had is gone entirely, not left as an empty bucket.
    assert store.get_roles("u1") == ["A-1/read"]
    assert store.remove("G-b") is True
    assert store.get_roles("u1") == []
    assert len(store) == 0


def test_remove_tolerates_a_grant_listing_an_archive_twice() -> None:
    store = GrantLinks()
    other = link("G-b")
    store.put(other)
    store.put(link("G-a", archives=("A-1", "A-1")))
    assert store.remove("G-a") is True
    assert store.active("u1", "A-1/read", to_us(T)) == [other]


def test_sweep_drops_exactly_the_ended_links() -> None:
    store = GrantLinks()
    store.put(link("G-1", start=0, end=10))
    store.put(link("G-2", start=0, end=20))
    store.put(link("G-3", start=0, end=10))
    assert store.sweep(9) == []
    assert len(store) == 3
    assert sorted(store.sweep(10)) == ["G-1", "G-3"]
    assert [g.uid for g in store.links()] == ["G-2"]
    assert store.sweep(10) == []
    assert store.sweep(20) == ["G-2"]
    assert len(store) == 0
    assert store.sweep(1_000) == []


def test_sweep_skips_stale_heap_entries_of_a_replaced_link() -> None:
    """A grant extended (replaced with a later end) is not swept at its old end."""
    store = GrantLinks()
    store.put(link("G-1", start=0, end=10))
    longer = link("G-1", start=0, end=50)
    store.put(longer)
    assert store.sweep(10) == []
    assert store.get("G-1") is longer
    assert store.active("u1", "A-1/read", 10) == [longer]
    assert store.sweep(50) == ["G-1"]


def test_sweep_skips_heap_entries_of_removed_links() -> None:
    store = GrantLinks()
    store.put(link("G-1", start=0, end=10))
    store.remove("G-1")
    assert store.sweep(10) == []


def test_sweep_rebuilds_the_heap_when_stale_entries_pile_up() -> None:
    store = GrantLinks()
    for i in range(1030):
        store.put(link("G-1", start=0, end=100 + i))
    assert len(store._expiry) == 1030
    assert store.sweep(0) == []
    assert store._expiry == [(100 + 1029, "G-1")]
    # Under the threshold nothing is rebuilt.
    small = GrantLinks()
    for i in range(1026):
        small.put(link("G-1", start=0, end=100 + i))
    small.sweep(0)
    assert len(small._expiry) == 1026
    small.put(link("G-1", start=0, end=5000))
    small.sweep(0)
    assert small._expiry == [(5000, "G-1")]


def test_store_is_truthy_even_empty_and_clear_empties_it() -> None:
    store = GrantLinks()
    assert bool(store) is True
    store.put(link())
    store.clear()
    assert len(store) == 0
    assert store.get("G-1") is None
    assert store.get_roles("u1") == []
    assert store.sweep(10**18) == []
    assert bool(store) is True


# -- the RoleManager interface Casbin uses ----------------------------------------------------


def test_static_links_from_policy_files_are_refused() -> None:
    with pytest.raises(ConfigError) as err:
        GrantLinks().add_link("u1", "A-1/read")
    assert str(err.value) == (
        "static grant link u1 -> A-1/read refused: grants come only from approved "
        "requests, never from policy.csv"
    )


def test_delete_link_removes_the_whole_grant() -> None:
    store = GrantLinks()
    store.put(link("G-a", actions=("read", "loan")))
    store.put(link("G-b", actions=("export",)))
    store.delete_link("u1", "A-1/read")
    assert store.get("G-a") is None
    assert store.get_roles("u1") == ["A-1/export"]
    store.delete_link("u1", "A-1/nothing")  # nothing to delete: no error
    assert len(store) == 1


def test_has_link_checks_the_window_at_the_instant_given() -> None:
    store = GrantLinks()
    store.put(link(start=100, end=200))
    assert store.has_link("u1", "A-1/read", "100") is True
    assert store.has_link("u1", "A-1/read", "199") is True
    assert store.has_link("u1", "A-1/read", "99") is False
    assert store.has_link("u1", "A-1/read", "200") is False
    assert store.has_link("u1", "A-1/read") is False  # no instant: deny
    assert store.has_link("u1", "A-1/read", "soon") is False
    assert store.has_link("u2", "A-1/read", "150") is False
    assert store.has_link("u1", "A-1/loan", "150") is False


def test_roles_and_users_are_sorted_and_unique() -> None:
    store = GrantLinks()
    store.put(link("G-1", subject="u2", archives=("A-2", "A-1")))
    store.put(link("G-2", subject="u1", archives=("A-1",), custodian_signed=True))
    store.put(link("G-3", subject="u1", archives=("A-1",)))
    assert store.get_roles("u1") == ["A-1/read", "A-1/read/custodian"]
    assert store.get_roles("u2") == ["A-1/read", "A-2/read"]
    assert store.get_users("A-1/read") == ["u1", "u2"]
    assert store.get_users("A-1/read/custodian") == ["u1"]
    assert store.get_users("A-3/read") == []
    assert store.print_roles() is None
