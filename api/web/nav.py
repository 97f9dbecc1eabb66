"""The navigation each person sees: the pages of their roles, and only those.

Showing a link decides nothing: every page checks its caller through the
services, as the API does. This only spares people links that would refuse them.
"""

from __future__ import annotations

from api.web.labels import N_
from policies.decision import Principal

APPROVERS = frozenset(
    {"department_head", "information_officer", "info_supervisor", "cs_manager", "general_manager"}
)
READERS = frozenset(
    {
        "salesperson",
        "department_head",
        "information_officer",
        "info_supervisor",
        "cs_manager",
        "general_manager",
        "external",
    }
)

# (path, label, roles that see it; empty = everyone signed in)
ITEMS: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("/ui", N_("Home"), frozenset()),
    ("/ui/clients", N_("My clients"), frozenset({"salesperson", "department_head"})),
    ("/ui/search", N_("Search"), READERS),
    ("/ui/requests", N_("My requests"), frozenset()),
    ("/ui/loans", N_("My loans"), READERS),
    ("/ui/queue", N_("Waiting for me"), APPROVERS),
    (
        "/ui/register",
        N_("Loan register"),
        frozenset({"information_officer", "info_supervisor", "cs_manager", "compliance"}),
    ),
    ("/ui/retention", N_("Past retention"), frozenset({"information_officer", "info_supervisor"})),
    ("/ui/custodians", N_("Custodians"), frozenset({"information_officer", "info_supervisor"})),
    ("/ui/audit", N_("Audit log"), frozenset({"compliance"})),
    ("/ui/users", N_("Users"), frozenset({"admin"})),
    ("/ui/handover", N_("Staff handover"), frozenset({"admin", "department_head"})),
    ("/ui/leaks", N_("Leak reports"), frozenset()),
    ("/ui/notifications", N_("Notifications"), frozenset()),
)


def nav_for(principal: Principal) -> list[tuple[str, str]]:
    return [(path, label) for path, label, roles in ITEMS if not roles or principal.roles & roles]
