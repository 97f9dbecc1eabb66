"""The whole role × action × classification × ownership × grant-state matrix.

The expected value of every cell comes from ``expected`` below, written from
the domain's rules independently of policy.csv; both allowed and denied cells are asserted.
Grants are built as the workflow builds them (custodian-signed exactly when the
chain for a top-secret archive includes the custodian).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.decision import Principal
from policies.engine import PolicyEngine
from policies.grants import GrantLink, to_us
from policies.roles import Action, Role
from vault.meta import ArchiveMeta

NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
USER = "u1"
CLASSES = ("internal", "secret", "top_secret")
OWNERSHIP = ("owner", "contact", "other")
GRANT_STATES = ("none", "active", "expired", "returned")
CONTENT_ACTIONS = (
    Action.READ,
    Action.UPDATE,
    Action.EXPORT,
    Action.PROVIDE,
    Action.LOAN,
    Action.DESTROY,
)
# The request kind whose grant gives each action, and the actions that kind grants.
GRANT_KIND = {
    Action.READ: ("view", ("read",)),
    Action.LOAN: ("loan", ("read", "loan")),
    Action.EXPORT: ("copy", ("export",)),
    Action.PROVIDE: ("external", ("provide",)),
    Action.DESTROY: ("destroy", ("destroy",)),
    Action.UPDATE: ("view", ("read",)),
}
STAFF = {
    Role.SALESPERSON,
    Role.DEPARTMENT_HEAD,
    Role.INFORMATION_OFFICER,
    Role.INFO_SUPERVISOR,
    Role.CS_MANAGER,
    Role.GENERAL_MANAGER,
}
# Who may hold a grant for each action (admin and compliance never touch content).
HOLDERS = {
    Action.READ: STAFF | {Role.EXTERNAL},
    Action.LOAN: STAFF,
    Action.EXPORT: STAFF,
    Action.PROVIDE: STAFF,
    Action.DESTROY: {Role.INFORMATION_OFFICER},
    Action.UPDATE: set(),
}


def expected(role: Role, action: Action, cls: str, own: str, grant: str) -> str:
    """'clear' | 'masked' | 'denied' from the domain's rules, written out independently."""
    if role in (Role.ADMIN, Role.COMPLIANCE):
        return "denied"  # separation of duties
    if role is Role.SALESPERSON and own in ("owner", "contact"):
        if action is Action.UPDATE:
            return "clear"
        if action is Action.READ and cls != "top_secret":
            return "clear"  # top-secret: only under a custodian-signed grant (Art 22)
    if grant == "active" and role in HOLDERS[action]:
        return "clear"
    if action is Action.READ and role is Role.INFORMATION_OFFICER and cls == "internal":
        return "masked"
    return "denied"


def make_grant(action: Action, cls: str, state: str) -> GrantLink | None:
    if state in ("none", "returned"):
        return None  # a returned grant's links are gone (see test_sync)
    kind, actions = GRANT_KIND[action]
    start = NOW - timedelta(hours=30)
    end = NOW + timedelta(hours=1) if state == "active" else NOW - timedelta(seconds=1)
    return GrantLink(
        uid=f"G-{kind}",
        kind=kind,
        subject=USER,
        archives=("A-1",),
        actions=actions,
        groups=frozenset({"identity", "contact"}),
        not_before=to_us(start),
        not_after=to_us(end),
        custodian_signed=cls == "top_secret",
        purpose="revisit",
        reason="customer asked",
        request_uid="R-1",
        classification=cls,
        custodian="keeper" if cls == "top_secret" else None,
    )


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine()


CELLS = list(itertools.product(Role, CONTENT_ACTIONS, CLASSES, OWNERSHIP, GRANT_STATES))


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("role", list(Role))
def test_content_matrix(engine: PolicyEngine, role: Role, cls: str) -> None:
    failures = []
    for action, own, state in itertools.product(CONTENT_ACTIONS, OWNERSHIP, GRANT_STATES):
        engine.links.clear()
        grant = make_grant(action, cls, state)
        if grant is not None:
            engine.links.put(grant)
        archive = ArchiveMeta(
            archive_no="A-1",
            classification=cls,
            owner=USER if own == "owner" else "someone",
            contacts=(USER,) if own == "contact" else (),
            custodian="keeper" if cls == "top_secret" else None,
        )
        who = Principal(
            USER,
            frozenset({role}),
            department="sales",
            clearance="top_secret",
            external=role is Role.EXTERNAL,
        )
        groups = ["contact"] if action in (Action.READ, Action.EXPORT, Action.PROVIDE) else []
        d = engine.decide(who, action, archive, groups, now=NOW)
        got = (
            "denied"
            if not d.allowed
            else ("masked" if d.masked_groups and not d.groups else "clear")
        )
        want = expected(role, action, cls, own, state)
        if got != want:
            failures.append(
                f"{role} {action} {cls} {own} grant={state}: want {want}, got {got} ({d.why})"
            )
        assert d.why  # every decision explains itself
        if (
            not d.allowed
            and role not in (Role.ADMIN, Role.COMPLIANCE)
            and action is not Action.UPDATE
        ):
            assert d.next_step, d.why  # a denial says what to do next
        if d.allowed and d.basis == "grant":
            assert d.grant_id and d.purpose == "revisit" and d.reason == "customer asked"
    assert not failures, "\n".join(failures)


def test_matrix_has_both_outcomes() -> None:
    outcomes = {expected(*cell) for cell in CELLS}
    assert outcomes == {"clear", "masked", "denied"}
    assert len(CELLS) == 9 * 6 * 3 * 3 * 4


# Non-content actions: the base policy per role, as a literal table.
ROLE_ACTIONS = {
    Role.SALESPERSON: {"create", "list", "search", "request", "report_leak"},
    Role.DEPARTMENT_HEAD: {
        "list",
        "search",
        "request",
        "approve",
        "reassign",
        "handover",
        "report_leak",
    },
    Role.INFORMATION_OFFICER: {
        "create",
        "list",
        "search",
        "reclassify",
        "request",
        "approve",
        "register_loan",
        "reassign",
        "report_leak",
    },
    Role.INFO_SUPERVISOR: {
        "list",
        "search",
        "request",
        "approve",
        "report_leak",
        "read_leaks",
        "handle_leaks",
        "audit",
        "inspect",
        "manage_decoys",
        "access_report",
    },
    Role.CS_MANAGER: {
        "list",
        "search",
        "reclassify",
        "request",
        "approve",
        "report_leak",
        "read_leaks",
        "handle_leaks",
        "access_report",
    },
    Role.GENERAL_MANAGER: {"list", "search", "request", "approve", "report_leak"},
    Role.COMPLIANCE: {"list", "audit", "report_leak", "read_leaks", "inspect", "access_report"},
    Role.EXTERNAL: {"request", "report_leak"},
    # Administrators start handovers but never reassign an archive (content ownership).
    Role.ADMIN: {"manage_users", "manage_keys", "report_leak", "handover"},
}
OTHER_ACTIONS = [
    a for a in Action if a not in CONTENT_ACTIONS and a not in (Action.READ_MASKED, Action.REPORT)
]


@pytest.mark.parametrize("role", list(Role))
def test_role_actions(engine: PolicyEngine, role: Role) -> None:
    engine.links.clear()
    archive = ArchiveMeta("A-1", "internal", "someone")
    who = Principal(USER, frozenset({role}), department="sales")
    for action in OTHER_ACTIONS:
        d = engine.decide(who, action, archive if action is Action.RECLASSIFY else None, now=NOW)
        assert d.allowed == (action.value in ROLE_ACTIONS[role]), (role, action, d.why)
        if d.allowed:
            assert d.basis == "role" and role.value in d.why


def test_report_needs_a_report_grant(engine: PolicyEngine) -> None:
    engine.links.clear()
    who = Principal(USER, frozenset({Role.DEPARTMENT_HEAD}), department="east")
    denied = engine.decide(who, Action.REPORT, now=NOW)
    assert not denied.allowed
    assert "report request" in denied.why and "general manager" in denied.why
    engine.links.put(
        GrantLink(
            "G-r",
            "report",
            USER,
            (),
            ("report",),
            frozenset(),
            to_us(NOW),
            to_us(NOW + timedelta(hours=1)),
            False,
            "statistics",
            "quarterly figures",
            "R-9",
        )
    )
    assert engine.decide(who, Action.REPORT, now=NOW).allowed


def test_top_secret_needs_the_custodian_signature(engine: PolicyEngine) -> None:
    """A grant the custodian did not sign never opens a top-secret archive."""
    engine.links.clear()
    grant = make_grant(Action.READ, "internal", "active")  # not custodian-signed
    assert grant is not None
    engine.links.put(grant)
    archive = ArchiveMeta("A-1", "top_secret", "someone", custodian="keeper")
    who = Principal(USER, frozenset({Role.CS_MANAGER}), clearance="top_secret")
    d = engine.decide(who, Action.READ, archive, now=NOW)
    assert not d.allowed and "custodian (keeper)" in d.why


def test_separation_of_duties_beats_other_roles(engine: PolicyEngine) -> None:
    engine.links.clear()
    archive = ArchiveMeta("A-1", "internal", USER)
    who = Principal(USER, frozenset({Role.SALESPERSON, Role.ADMIN}), clearance="top_secret")
    d = engine.decide(who, Action.READ, archive, now=NOW)
    assert not d.allowed and "separation of duties" in d.why


def test_uncleared_owner_is_told_why(engine: PolicyEngine) -> None:
    engine.links.clear()  # the engine is shared by the module: no grant left by another test
    archive = ArchiveMeta("A-1", "secret", USER)
    who = Principal(USER, frozenset({Role.SALESPERSON}), clearance="internal")
    d = engine.decide(who, Action.READ, archive, now=NOW)
    assert not d.allowed and "clearance (internal)" in d.why
    assert "customer-service manager" in d.why


@pytest.mark.parametrize(
    "bad",
    [
        ("read", None, []),
        ("fly", "A-1", []),
        ("read", "A-1", ["no_such_group"]),
    ],
)
def test_fail_closed_inputs(engine: PolicyEngine, bad) -> None:
    engine.links.clear()
    action, archive_no, groups = bad
    archive = ArchiveMeta(archive_no, "internal", USER) if archive_no else None
    who = Principal(USER, frozenset({Role.SALESPERSON}))
    assert not engine.decide(who, action, archive, groups, now=NOW).allowed


def test_fail_closed_states(engine: PolicyEngine) -> None:
    engine.links.clear()
    who = Principal(USER, frozenset({Role.SALESPERSON}), clearance="top_secret")
    destroyed = ArchiveMeta("A-1", "internal", USER, status="destroyed")
    assert not engine.decide(who, Action.READ, destroyed, now=NOW).allowed
    odd = ArchiveMeta("A-1", "confidential", USER)
    assert not engine.decide(who, Action.READ, odd, now=NOW).allowed
    nobody = Principal(USER, frozenset({"wizard"}))
    assert not engine.decide(nobody, Action.LIST, now=NOW).allowed
    naive = datetime(2025, 1, 1)
    assert not engine.decide(who, Action.LIST, now=naive).allowed


def test_denial_tells_what_to_file(engine: PolicyEngine) -> None:
    engine.links.clear()
    who = Principal(USER, frozenset({Role.SALESPERSON}), department="sales")
    d = engine.decide(who, Action.READ, ArchiveMeta("A-1", "internal", "x"), now=NOW)
    assert d.next_step == (
        "file a view request; it needs your department head and an information officer"
    )
    ext = Principal("v", frozenset({Role.EXTERNAL}), external=True)
    d = engine.decide(ext, Action.READ, ArchiveMeta("A-1", "secret", "x"), now=NOW)
    assert d.next_step == (
        "file a view request; it needs an information officer and the customer-service manager"
    )


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(min_value=-10_000, max_value=10_000),
    length=st.integers(min_value=1, max_value=10_000),
    probe=st.integers(min_value=-20_000, max_value=20_000),
)
def test_grant_window_is_half_open(start: int, length: int, probe: int) -> None:
    """A grant counts exactly on [not_before, not_after), to the microsecond."""
    engine = _ENGINE
    engine.links.clear()
    nb = NOW + timedelta(microseconds=start)
    na = nb + timedelta(microseconds=length)
    engine.links.put(
        GrantLink(
            "G-h",
            "view",
            USER,
            ("A-1",),
            ("read",),
            frozenset({"contact"}),
            to_us(nb),
            to_us(na),
            False,
            "revisit",
            "r",
            "R-h",
        )
    )
    at = NOW + timedelta(microseconds=probe)
    d = engine.decide(
        Principal(USER, frozenset({Role.SALESPERSON})),
        Action.READ,
        ArchiveMeta("A-1", "internal", "x"),
        ["contact"],
        now=at,
    )
    assert d.allowed == (nb <= at < na)


_ENGINE = PolicyEngine()
