"""What each kind of decision carries, field by field.

The matrix test checks *whether* each cell is allowed; these pin *what* the decision
says: ``basis``, the deciding ``rule``, ``grant_id``/``purpose``/``reason`` (which go
into the audit entry), ``groups`` and ``masked_groups`` (what may be shown in clear or
masked), ``valid_until`` and ``next_step``, and the exact ``why``. Whole ``Decision``
values are compared, so a field that drifts fails here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from policies.decision import Decision, Principal
from policies.engine import PolicyEngine, check_policy, relation
from policies.errors import AccessDenied, ConfigError
from policies.grants import GrantLink, to_us
from policies.roles import Action, Role
from vault.meta import ArchiveMeta

NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
USER = "u1"
_ENGINE = PolicyEngine()
KNOWN = _ENGINE.known_groups
VIEW_STEP = "file a view request; it needs your department head and an information officer"
SECRET_VIEW_STEP = (
    "file a view request; it needs your department head, an information officer and the "
    "customer-service manager"
)
READ_LINE = ("read", "salesperson", "*", "grant", "allow")
MASK_LINE = ("read_masked", "information_officer", "internal", "*", "allow")


@pytest.fixture
def engine() -> PolicyEngine:
    _ENGINE.links.clear()
    return _ENGINE


def who(*roles: str, clearance: str = "top_secret") -> Principal:
    return Principal(USER, frozenset(roles), department="sales", clearance=clearance)


def archive(cls: str = "internal", owner: str = "x", **kw) -> ArchiveMeta:
    return ArchiveMeta("A-1", cls, owner, **kw)


def grant(
    uid: str = "G-1",
    *,
    actions: tuple[str, ...] = ("read",),
    groups: tuple[str, ...] = ("identity", "contact"),
    start: datetime = NOW - H,
    end: datetime = NOW + H,
    archives: tuple[str, ...] = ("A-1",),
    kind: str = "view",
    custodian_signed: bool = False,
    classification: str = "internal",
    custodian: str | None = None,
    awaiting: bool = False,
    subject: str = USER,
) -> GrantLink:
    return GrantLink(
        uid=uid,
        kind=kind,
        subject=subject,
        archives=archives,
        actions=actions,
        groups=frozenset(groups),
        not_before=to_us(start),
        not_after=to_us(end),
        custodian_signed=custodian_signed,
        purpose="revisit",
        reason="asked",
        request_uid="R-1",
        classification=classification,
        custodian=custodian,
        awaiting_confirmation=awaiting,
    )


def by_grant(uid: str, groups: tuple[str, ...], end: datetime, *, act: str = "read", **kw):
    """The allow a view grant ``uid`` (request R-1) gives u1 on A-1."""
    return Decision(
        allowed=True,
        action=act,
        why=f"allowed: grant {uid} (view request R-1, purpose revisit) gives u1 {act} on "
        f"archive A-1 until {end.isoformat()}",
        basis="grant",
        rule=kw.pop("rule", READ_LINE),
        grant_id=uid,
        purpose="revisit",
        reason="asked",
        groups=groups,
        valid_until=end,
        **kw,
    )


def no_grant(act: str = "read", step: str = VIEW_STEP) -> Decision:
    return Decision(
        allowed=False,
        action=act,
        why=f"denied: u1 is not the owner or a contact of archive A-1 and holds no active "
        f"grant for {act}; {step}",
        basis="denied",
        next_step=step,
    )


# -- refusals of the question itself ---------------------------------------------------


def test_refusals_of_the_question(engine: PolicyEngine) -> None:
    sales = who("salesperson")
    assert engine.decide(sales, "fly", archive(), now=NOW) == Decision(
        False, "fly", "denied: unknown action 'fly'", "denied"
    )
    naive = datetime(2025, 1, 1)
    assert engine.decide(sales, Action.LIST, now=naive) == Decision(
        False, "list", "denied: the decision clock must be timezone-aware", "denied"
    )
    assert engine.decide(
        sales, Action.READ, archive(), ["contact", "nope", "zap", "nope"], now=NOW
    ) == Decision(
        False,
        "read",
        f"denied: unknown field group(s) nope, zap (known: {', '.join(KNOWN)})",
        "denied",
    )
    assert engine.decide(who("wizard"), Action.LIST, now=NOW) == Decision(
        False, "list", "denied: u1 holds no role; ask an administrator to assign one", "denied"
    )
    assert engine.decide(sales, Action.READ, None, now=NOW) == Decision(
        False, "read", "denied: read needs an archive", "denied"
    )
    gone = archive(owner=USER, status="destroyed")
    assert engine.decide(sales, Action.READ, gone, now=NOW) == Decision(
        False, "read", "denied: archive A-1 was destroyed; its content no longer exists", "denied"
    )
    odd = archive("confidential", owner=USER)
    assert engine.decide(sales, Action.UPDATE, odd, now=NOW) == Decision(
        False,
        "update",
        "denied: archive A-1 has an unknown classification 'confidential'",
        "denied",
    )


def test_unknown_roles_are_ignored_not_refused(engine: PolicyEngine) -> None:
    d = engine.decide(who("wizard", "salesperson"), Action.LIST, now=NOW)
    assert d.allowed and d.basis == "role" and "role salesperson" in d.why


def test_a_role_without_lines_for_the_action_does_not_hide_the_next_role(
    engine: PolicyEngine,
) -> None:
    # "external" sorts first and has no line for list; salesperson's line still counts.
    d = engine.decide(who("external", "salesperson"), Action.LIST, now=NOW)
    assert d.allowed and d.rule == ("list", "salesperson", "*", "*", "allow")


def test_an_archive_passed_with_a_non_archive_action_shapes_the_denial(
    engine: PolicyEngine,
) -> None:
    d = engine.decide(who("external"), Action.LIST, archive(), now=NOW)
    assert not d.allowed
    assert d.why.startswith(
        "denied: u1 is not the owner or a contact of archive A-1 and holds no active grant "
        "for list; roles that may list: "
    )


# -- separation of duties ----------------------------------------------------------------------


@pytest.mark.parametrize("act", ["read", "read_masked", "update", "export", "provide", "loan"])
def test_separation_of_duties_names_the_deny_line(engine: PolicyEngine, act: str) -> None:
    engine.links.put(grant(actions=(act,)))
    d = engine.decide(who("salesperson", "compliance"), act, archive(owner=USER), now=NOW)
    assert d == Decision(
        False,
        act,
        f"denied: role compliance never has {act} on customer content "
        f"(separation of duties; policy: {act}, compliance, *, *, deny)",
        "denied",
        rule=(act, "compliance", "*", "*", "deny"),
    )


def test_separation_of_duties_names_the_first_denying_role(engine: PolicyEngine) -> None:
    d = engine.decide(
        who("salesperson", "compliance", "admin"), Action.READ, archive("secret"), now=NOW
    )
    assert d.rule == ("read", "admin", "*", "*", "deny")
    assert "role admin never has read" in d.why


def test_separation_of_duties_is_only_about_content(engine: PolicyEngine) -> None:
    d = engine.decide(who("admin"), Action.MANAGE_USERS, now=NOW)
    assert d.allowed and d.rule == ("manage_users", "admin", "*", "*", "allow")
    d = engine.decide(who("compliance"), Action.LIST, now=NOW)
    assert d.allowed and d.basis == "role"
    # Destroying is not among the deny lines: an administrator is simply not allowed.
    d = engine.decide(who("admin"), Action.DESTROY, archive(), now=NOW)
    assert not d.allowed and d.rule == ()


# -- allows: owner and role ----------------------------------------------------------------------


def test_owner_allow(engine: PolicyEngine) -> None:
    d = engine.decide(
        who("salesperson", "department_head", clearance="internal"),
        Action.READ,
        archive(owner=USER),
        ["contact", "identity", "contact"],
        now=NOW,
    )
    line = ("read", "salesperson", "internal", "owner", "allow")
    assert d == Decision(
        True,
        "read",
        "allowed: u1 owns archive A-1 (policy: read, salesperson, internal, owner, allow)",
        "owner",
        rule=line,
        groups=("contact", "identity"),
    )
    assert d.shows_in_clear("contact") and not d.shows_in_clear("family")


def test_contact_allow_without_groups_covers_every_known_group(engine: PolicyEngine) -> None:
    a = archive("secret", contacts=(USER,))
    d = engine.decide(who("salesperson", clearance="secret"), Action.READ, a, now=NOW)
    assert d == Decision(
        True,
        "read",
        "allowed: u1 is listed as a contact on archive A-1 "
        "(policy: read, salesperson, secret, owner, allow)",
        "owner",
        rule=("read", "salesperson", "secret", "owner", "allow"),
        groups=KNOWN,
    )


def test_owner_wins_over_a_grant_and_update_of_top_secret(engine: PolicyEngine) -> None:
    engine.links.put(grant(actions=("read",)))
    d = engine.decide(who("salesperson"), Action.READ, archive(owner=USER), now=NOW)
    assert d.basis == "owner" and d.grant_id is None
    d = engine.decide(
        who("salesperson"), Action.UPDATE, archive("top_secret", owner=USER, custodian="k"), now=NOW
    )
    assert d.basis == "owner"
    assert d.rule == ("update", "salesperson", "top_secret", "owner", "allow")


def test_role_allow(engine: PolicyEngine) -> None:
    d = engine.decide(who("salesperson"), Action.LIST, now=NOW)
    assert d == Decision(
        True,
        "list",
        "allowed: role salesperson may list (policy: list, salesperson, *, *, allow)",
        "role",
        rule=("list", "salesperson", "*", "*", "allow"),
    )
    d = engine.decide(
        who("salesperson", "department_head"), Action.SEARCH, (), ["contact"], now=NOW
    )
    assert d.rule == ("search", "department_head", "*", "*", "allow")
    assert d.groups == ("contact",)
    d = engine.decide(who("information_officer"), Action.RECLASSIFY, archive("secret"), now=NOW)
    assert d.allowed and d.basis == "role"


def test_relation() -> None:
    def rel(clearance: str, cls: str, owner: str = USER, contacts=()) -> str:
        return relation(
            who("salesperson", clearance=clearance), archive(cls, owner, contacts=contacts)
        )

    assert rel("secret", "secret") == "owner"
    assert rel("top_secret", "secret") == "owner"
    assert rel("internal", "secret") == "uncleared_owner"
    assert rel("secret", "internal", owner="x", contacts=("y", USER)) == "owner"
    assert rel("internal", "top_secret", owner="x", contacts=(USER,)) == "uncleared_owner"
    assert rel("bogus", "internal") == "uncleared_owner"  # unknown clearance: lowest
    assert rel("top_secret", "bogus") == "uncleared_owner"  # unknown marking: highest
    assert rel("top_secret", "internal", owner="x") == "other"


# -- allows: masked --------------------------------------------------------------------------------


def masked(act: str, groups: tuple[str, ...]) -> Decision:
    return Decision(
        True,
        act,
        "allowed masked: role information_officer sees that values exist in archive A-1 but "
        "not the values (policy: read_masked, information_officer, internal, *, allow); "
        + VIEW_STEP,
        "masked",
        rule=MASK_LINE,
        masked_groups=groups,
        next_step=VIEW_STEP,
    )


def test_masked_read(engine: PolicyEngine) -> None:
    io = who("information_officer")
    d = engine.decide(io, Action.READ, archive(), ["contact", "family"], now=NOW)
    assert d == masked("read", ("contact", "family"))
    assert d.allowed and not d.shows_in_clear("contact")
    assert engine.decide(io, Action.READ, archive(), now=NOW) == masked("read", KNOWN)
    assert engine.decide(io, Action.READ_MASKED, archive(), ["family"], now=NOW) == masked(
        "read_masked", ("family",)
    )


def test_no_masked_read_beyond_internal_or_for_other_actions(engine: PolicyEngine) -> None:
    io = who("information_officer")
    assert engine.decide(io, Action.READ, archive("secret"), now=NOW) == no_grant(
        step=SECRET_VIEW_STEP
    )
    d = engine.decide(io, Action.EXPORT, archive(), ["contact"], now=NOW)
    assert not d.allowed and d.masked_groups == ()
    d = engine.decide(who("salesperson"), Action.READ_MASKED, archive(), now=NOW)
    assert not d.allowed


# -- allows: grants ----------------------------------------------------------------------------------


def test_grant_allow_carries_the_grant(engine: PolicyEngine) -> None:
    engine.links.put(grant())
    sales = who("salesperson")
    d = engine.decide(sales, Action.READ, archive(), ["contact"], now=NOW)
    assert d == by_grant("G-1", ("contact",), NOW + H)
    assert d.valid_until is not None and d.valid_until.tzinfo is not None
    # No groups asked: the grant's groups, in the known order.
    d = engine.decide(sales, Action.READ, archive(), now=NOW)
    assert d == by_grant("G-1", ("identity", "contact"), NOW + H)
    assert d.shows_in_clear("identity") and not d.shows_in_clear("family")


def test_grant_allow_to_the_microsecond(engine: PolicyEngine) -> None:
    start, end = NOW, NOW + H
    engine.links.put(grant(start=start, end=end))
    sales = who("salesperson")
    us = timedelta(microseconds=1)
    assert not engine.decide(sales, Action.READ, archive(), now=start - us).allowed
    assert engine.decide(sales, Action.READ, archive(), now=start).allowed
    last = engine.decide(sales, Action.READ, archive(), now=end - us)
    assert last == by_grant("G-1", ("identity", "contact"), end)
    ended = engine.decide(sales, Action.READ, archive(), now=end)
    assert ended == Decision(
        False,
        "read",
        f"denied: grant G-1 on archive A-1 ended at 2025-03-03T13:00:00+00:00; {VIEW_STEP}",
        "denied",
        next_step=VIEW_STEP,
    )


def test_custodian_signed_grant_on_top_secret(engine: PolicyEngine) -> None:
    engine.links.put(
        grant(custodian_signed=True, classification="top_secret", custodian="k", end=NOW + 2 * H)
    )
    d = engine.decide(
        who("cs_manager"), Action.READ, archive("top_secret", custodian="k"), ["contact"], now=NOW
    )
    end = NOW + 2 * H
    assert d == Decision(
        True,
        "read",
        f"allowed: grant G-1 (view request R-1, purpose revisit) gives u1 read on archive A-1 "
        f"until {end.isoformat()} (signed by the custodian)",
        "grant",
        rule=("read", "cs_manager", "*", "grant", "allow"),
        grant_id="G-1",
        purpose="revisit",
        reason="asked",
        groups=("contact",),
        valid_until=end,
    )


def test_actions_without_field_groups_ignore_the_groups(engine: PolicyEngine) -> None:
    engine.links.put(grant(actions=("read", "loan"), groups=("contact",), kind="view"))
    d = engine.decide(who("salesperson"), Action.LOAN, archive(), ["contact", "family"], now=NOW)
    assert d == by_grant(
        "G-1", (), NOW + H, act="loan", rule=("loan", "salesperson", "*", "grant", "allow")
    )


def test_report_grant_speaks_of_reports(engine: PolicyEngine) -> None:
    engine.links.put(grant("G-r", actions=("report",), archives=(), kind="report", groups=()))
    d = engine.decide(who("department_head"), Action.REPORT, now=NOW)
    assert d == Decision(
        True,
        "report",
        f"allowed: grant G-r (report request R-1, purpose revisit) gives u1 report on reports "
        f"until {(NOW + H).isoformat()}",
        "grant",
        rule=("report", "department_head", "*", "grant", "allow"),
        grant_id="G-r",
        purpose="revisit",
        reason="asked",
        valid_until=NOW + H,
    )


def test_report_denial_without_archive(engine: PolicyEngine) -> None:
    d = engine.decide(who("department_head"), Action.REPORT, now=NOW)
    assert not d.allowed and d.why.startswith("denied: u1 holds no active report grant; ")
    assert d.next_step and d.why.endswith(d.next_step)
    d = engine.decide(who("external"), Action.LIST, now=NOW)
    assert d.why.startswith("denied: none of u1's roles (external) may list; roles that may list")


def test_the_covering_grant_is_chosen_then_the_latest_ending(engine: PolicyEngine) -> None:
    engine.links.put(grant("G-long", groups=("contact",), end=NOW + 2 * H))
    engine.links.put(grant("G-wide", groups=("contact", "identity"), end=NOW + H))
    sales = who("salesperson")
    d = engine.decide(sales, Action.READ, archive(), ["identity", "contact"], now=NOW)
    assert d == by_grant("G-wide", ("identity", "contact"), NOW + H)
    d = engine.decide(sales, Action.READ, archive(), ["contact"], now=NOW)
    assert d == by_grant("G-long", ("contact",), NOW + 2 * H)
    d = engine.decide(sales, Action.READ, archive(), now=NOW)
    assert d == by_grant("G-long", ("contact",), NOW + 2 * H)


def test_only_the_holders_grant_on_this_archive_counts(engine: PolicyEngine) -> None:
    engine.links.put(grant("G-other", subject="u2"))
    engine.links.put(grant("G-a2", archives=("A-2",)))
    engine.links.put(grant("G-loan", actions=("loan",)))
    assert engine.decide(who("salesperson"), Action.READ, archive(), now=NOW) == no_grant()


def test_grant_lacking_groups_names_the_best_grant_and_the_missing(engine: PolicyEngine) -> None:
    engine.links.put(grant("G-a", groups=("contact",), end=NOW + 2 * H))
    engine.links.put(grant("G-b", groups=("contact", "identity"), end=NOW + H))
    d = engine.decide(
        who("salesperson"),
        Action.READ,
        archive(),
        ["health", "identity", "family", "contact"],
        now=NOW,
    )
    assert d == Decision(
        False,
        "read",
        "denied: grant G-b does not cover field group(s) health, family of archive A-1; ask only "
        f"for contact, identity or {VIEW_STEP}",
        "denied",
        next_step=VIEW_STEP,
    )


def test_grant_lacking_groups_ties_go_to_the_latest_ending(engine: PolicyEngine) -> None:
    engine.links.put(grant("G-a", groups=("contact",), end=NOW + 2 * H))
    engine.links.put(grant("G-c", groups=("identity",), end=NOW + H))
    d = engine.decide(who("salesperson"), Action.READ, archive(), ["identity", "contact"], now=NOW)
    assert d.why.startswith("denied: grant G-a does not cover field group(s) identity of ")


def test_export_grant_must_cover_the_groups(engine: PolicyEngine) -> None:
    engine.links.put(grant(actions=("export",), groups=("contact",), kind="copy"))
    io = who("information_officer")
    d = engine.decide(io, Action.EXPORT, archive(), ["contact"], now=NOW)
    assert d.allowed and d.groups == ("contact",) and d.masked_groups == ()
    d = engine.decide(io, Action.EXPORT, archive(), ["contact", "family"], now=NOW)
    assert not d.allowed and d.masked_groups == ()
    assert d.why.startswith("denied: grant G-1 does not cover field group(s) family of archive")
    assert d.next_step and d.next_step.startswith("file a copy request")


def test_grant_partly_masked(engine: PolicyEngine) -> None:
    engine.links.put(grant(groups=("contact", "career")))
    d = engine.decide(
        who("information_officer"),
        Action.READ,
        archive(),
        ["identity", "contact", "family"],
        now=NOW,
    )
    assert d == Decision(
        True,
        "read",
        "allowed: grant G-1 covers career, contact; identity, family shown masked "
        "(policy: read_masked, information_officer, internal, *, allow)",
        "grant",
        rule=MASK_LINE,
        grant_id="G-1",
        purpose="revisit",
        reason="asked",
        groups=("contact",),
        masked_groups=("identity", "family"),
        valid_until=NOW + H,
    )
    assert d.shows_in_clear("contact") and not d.shows_in_clear("identity")


def test_no_partly_masked_read_without_a_masked_line(engine: PolicyEngine) -> None:
    engine.links.put(grant(groups=("contact",), classification="secret"))
    d = engine.decide(
        who("information_officer"), Action.READ, archive("secret"), ["contact", "family"], now=NOW
    )
    assert not d.allowed
    assert d.why.startswith("denied: grant G-1 does not cover field group(s) family of archive")


# -- denials that explain a grant ------------------------------------------------------------------


def test_grant_approved_for_a_lower_marking_does_not_count(engine: PolicyEngine) -> None:
    engine.links.put(grant())
    d = engine.decide(who("salesperson"), Action.READ, archive("secret"), now=NOW)
    assert d == Decision(
        False,
        "read",
        "denied: grant G-1 (view request R-1) was approved for an internal archive and archive "
        "A-1 is now secret; its chain lacks the signatures that marking needs; " + SECRET_VIEW_STEP,
        "denied",
        next_step=SECRET_VIEW_STEP,
    )
    # A fitting grant next to it still counts.
    engine.links.put(grant("G-2", classification="secret", end=NOW + 30 * timedelta(minutes=1)))
    d = engine.decide(who("salesperson"), Action.READ, archive("secret"), now=NOW)
    assert d.allowed and d.grant_id == "G-2"


def test_unconfirmed_loan_says_to_confirm(engine: PolicyEngine) -> None:
    engine.links.put(grant(actions=("read", "loan"), kind="loan", awaiting=True))
    d = engine.decide(who("salesperson"), Action.LOAN, archive(), now=NOW)
    step = (
        "confirm your loan of request R-1 first: POST /loans/{id}/confirm "
        "(GET /loans lists your register lines)"
    )
    assert d == Decision(
        False,
        "loan",
        "denied: grant G-1 (loan request R-1) is a loan whose register line you have not "
        "confirmed yet (Art 19.5: the borrower confirms the line before the material goes "
        "out); " + step,
        "denied",
        next_step=step,
    )


def test_unfit_grant_is_explained_before_an_ended_one(engine: PolicyEngine) -> None:
    engine.links.put(grant("G-old", start=NOW - 3 * H, end=NOW - H))
    engine.links.put(grant("G-now"))
    d = engine.decide(who("salesperson"), Action.READ, archive("secret"), now=NOW)
    assert d.why.startswith("denied: grant G-now (view request R-1) was approved for an internal")


def test_ended_grant_named_is_the_latest_ending(engine: PolicyEngine) -> None:
    engine.links.put(grant("G-a", start=NOW - 3 * H, end=NOW - 2 * H))
    engine.links.put(grant("G-b", start=NOW - 3 * H, end=NOW - H))
    d = engine.decide(who("salesperson"), Action.READ, archive(), now=NOW)
    assert d.why == (
        f"denied: grant G-b on archive A-1 ended at 2025-03-03T11:00:00+00:00; {VIEW_STEP}"
    )


def test_ended_grant_on_top_secret_counts_only_if_custodian_signed(engine: PolicyEngine) -> None:
    top = archive("top_secret", custodian="k")
    cs = who("cs_manager")
    engine.links.put(grant("G-plain", classification="top_secret", custodian="k", end=NOW - H))
    d = engine.decide(cs, Action.READ, top, now=NOW)
    assert d.why.startswith("denied: u1 is not the owner or a contact of archive A-1")
    engine.links.put(
        grant(
            "G-signed",
            classification="top_secret",
            custodian="k",
            custodian_signed=True,
            end=NOW - 2 * H,
        )
    )
    d = engine.decide(cs, Action.READ, top, now=NOW)
    assert d.why.startswith("denied: grant G-signed on archive A-1 ended at 2025-03-03T10:00:00")


def test_grant_without_custodian_signature_on_top_secret_is_explained(
    engine: PolicyEngine,
) -> None:
    engine.links.put(grant(classification="top_secret", custodian="k"))
    d = engine.decide(who("cs_manager"), Action.READ, archive("top_secret", custodian="k"), now=NOW)
    assert not d.allowed
    assert d.why.startswith(
        "denied: grant G-1 (view request R-1) was not signed by the custodian and archive A-1 "
        "is top-secret (Art 22); "
    )


def test_other_denials(engine: PolicyEngine) -> None:
    sales = who("salesperson", clearance="internal")
    d = engine.decide(sales, Action.UPDATE, archive(), now=NOW)
    assert d == Decision(
        False,
        "update",
        "denied: only the owner (x) or a listed contact updates archive A-1; ask for it to be "
        "reassigned to you or for you to be listed as a contact",
        "denied",
    )
    d = engine.decide(sales, Action.READ, archive("secret", owner=USER), now=NOW)
    assert d.why.startswith("denied: your clearance (internal) is below archive A-1's marking")
    d = engine.decide(
        who("salesperson"), Action.READ, archive("top_secret", owner=USER, custodian="k"), now=NOW
    )
    assert d.why.startswith(
        "denied: archive A-1 is top-secret; even its owner reads it only under a grant its "
        "custodian signed (Art 22); file a view request"
    )
    assert engine.decide(who("salesperson"), Action.LOAN, archive(), now=NOW) == no_grant(
        "loan", "file a loan request; it needs your department head and an information officer"
    )


# -- the engine's other answers --------------------------------------------------------------------


def test_engine_tables_and_sweep(engine: PolicyEngine) -> None:
    assert engine.revision == 0
    assert engine.roles_allowing("read") == {
        "salesperson",
        "department_head",
        "information_officer",
        "info_supervisor",
        "cs_manager",
        "general_manager",
        "external",
    }
    assert engine.roles_allowing("destroy") == {"information_officer"}
    assert engine.roles_allowing("nothing") == set()
    engine.roles_allowing("destroy").add("admin")
    assert engine.roles_allowing("destroy") == {"information_officer"}
    lines = engine.base_lines
    assert ("read", "admin", "*", "*", "deny") in [tuple(x) for x in lines]
    lines.clear()
    assert engine.base_lines
    engine.links.put(grant("G-a", end=NOW))
    engine.links.put(grant("G-b", end=NOW + H))
    assert engine.sweep(NOW) == ["G-a"]
    assert [g.uid for g in engine.links.links()] == ["G-b"]


def test_check_policy_refuses_unknown_names() -> None:
    check_policy([("read", "salesperson", "internal", "owner", "allow")], "ok.csv")
    cases = [
        (("read", "salesperson", "internal", "owner"), "expected action, role, classification"),
        (("fly", "salesperson", "*", "*", "allow"), "unknown action 'fly'"),
        (("read", "wizard", "*", "*", "allow"), "unknown role 'wizard'"),
        (("read", "salesperson", "confidential", "*", "allow"), "unknown classification"),
        (
            ("read", "salesperson", "*", "friend", "allow"),
            "relation must be one of *, owner, grant",
        ),
        (("read", "salesperson", "*", "*", "maybe"), "effect must be allow or deny"),
    ]
    for line, message in cases:
        with pytest.raises(ConfigError) as err:
            check_policy([line], "x.csv")
        assert message in str(err.value)
        assert str(err.value).startswith(f"x.csv: p, {', '.join(line)}: ")
    check_policy([("read", "salesperson", "*", "grant", "deny")], "ok.csv")
    check_policy([("read", "salesperson", "top_secret", "*", "allow")], "ok.csv")


def test_engine_refuses_a_bad_policy_file(tmp_path: Path) -> None:
    bad = tmp_path / "policy.csv"
    bad.write_text("p, read, wizard, *, *, allow\n", "utf-8")
    with pytest.raises(ConfigError) as err:
        PolicyEngine(policy_file=bad)
    assert str(err.value) == f"{bad}: p, read, wizard, *, *, allow: unknown role 'wizard'"


def test_engine_takes_the_known_groups_it_is_given() -> None:
    pe = PolicyEngine(known_groups=["contact", "family"])
    assert pe.known_groups == ("contact", "family")
    d = pe.decide(who("salesperson"), Action.READ, archive(), ["identity"], now=NOW)
    assert d.why == "denied: unknown field group(s) identity (known: contact, family)"


def test_owner_line_for_any_marking_and_role_lines_are_not_owner_lines(tmp_path: Path) -> None:
    policy = tmp_path / "policy.csv"
    policy.write_text(
        "p, read, salesperson, *, owner, allow\np, update, salesperson, *, *, allow\n", "utf-8"
    )
    pe = PolicyEngine(policy_file=policy)
    sales = who("salesperson")
    d = pe.decide(sales, Action.READ, archive("secret", owner=USER), now=NOW)
    assert d.basis == "owner"
    assert d.rule == ("read", "salesperson", "secret", "owner", "allow")
    # An owner allowed by a line for anyone is allowed by role, not as owner.
    d = pe.decide(sales, Action.UPDATE, archive(owner=USER), now=NOW)
    assert d.basis == "role" and d.rule == ("update", "salesperson", "*", "*", "allow")
    assert pe.roles_allowing("update") == {"salesperson"}


# -- the decision value ------------------------------------------------------------------------------


def test_decision_value() -> None:
    allow = Decision(
        True,
        "read",
        "w",
        "grant",
        rule=("a", "b"),
        grant_id="G",
        purpose="p",
        reason="r",
        groups=("contact", "identity"),
        masked_groups=("identity",),
        next_step="n",
        valid_until=NOW,
    )
    assert allow.require() is allow
    assert allow.shows_in_clear("contact")
    assert not allow.shows_in_clear("identity")  # masked
    assert not allow.shows_in_clear("family")  # not covered
    assert allow.as_dict() == {
        "allowed": True,
        "action": "read",
        "why": "w",
        "basis": "grant",
        "rule": ["a", "b"],
        "grant_id": "G",
        "purpose": "p",
        "reason": "r",
        "groups": ["contact", "identity"],
        "masked_groups": ["identity"],
        "next_step": "n",
        "valid_until": "2025-03-03T12:00:00+00:00",
    }
    no = Decision(False, "read", "why not", "denied", groups=("contact",))
    assert not no.shows_in_clear("contact")
    with pytest.raises(AccessDenied) as err:
        no.require()
    assert err.value.decision is no and str(err.value) == "why not"
    assert no.as_dict()["valid_until"] is None
    assert no.as_dict()["rule"] == []


def test_principal_value() -> None:
    p = Principal("u1", {"b", "a"})  # type: ignore[arg-type]
    assert isinstance(p.roles, frozenset) and p.roles == {"a", "b"}
    assert p.role_label == "a,b"
    assert Principal("u1", frozenset()).role_label == "none"
    assert (p.department, p.clearance, p.external) == ("", "internal", False)
    assert Role.SALESPERSON == "salesperson"


def test_masked_read_next_step_follows_the_archives_marking(tmp_path: Path) -> None:
    """Under a policy that masks secret archives too, the next step names the chain a
    secret archive needs (not the internal one)."""
    policy = tmp_path / "policy.csv"
    policy.write_text("p, read_masked, information_officer, *, *, allow\n", "utf-8")
    pe = PolicyEngine(policy_file=policy)
    d = pe.decide(who("information_officer"), Action.READ, archive("secret"), ["contact"], now=NOW)
    assert d.basis == "masked" and d.masked_groups == ("contact",)
    assert d.next_step == SECRET_VIEW_STEP
