"""What a statistical report covers (Art 10-11): its departments and its items.

A report request states its ``scope``: ``department`` (the default: the requester's
own department) or ``all``. DOMAIN.md's reading of Art 10 is that report grants
cover the requesting department's statistics unless the general manager approves
all departments; the report chain always ends with the general manager, and a
chain without a general-manager stage may not carry an ``all`` report at all
(refused at filing, so a reconfigured chain cannot quietly widen a report).

It also names its ``items`` (:data:`vault.archives.REPORT_ITEMS`, all by default):
the approved grant covers those items and the summary returns only them. Changing
the items of an approved grant is Art 11's "report to the general manager for
approval" (``policies.report_items``).

The request records scope, departments and items when filed; the final signature
copies them onto the grant (:func:`stamp`); ``GET /reports/summary`` counts only
what the grant covers (:func:`reach`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from policies.chains import StageSpec
from policies.decision import Principal
from policies.errors import InvalidInput, NotFound
from policies.models import AccessGrant, AccessRequest
from policies.roles import GrantState, RequestKind, Role
from vault.archives import REPORT_ITEMS

SCOPES = ("department", "all")


@dataclass(frozen=True, slots=True)
class Reach:
    """What one report grant lets its holder count: departments (None: all) and items."""

    grant: str
    scope: str
    departments: tuple[str, ...] | None
    items: tuple[str, ...]

    def public(self) -> dict[str, Any]:
        return {
            "grant": self.grant,
            "scope": self.scope,
            "departments": "all" if self.departments is None else list(self.departments),
            "items": list(self.items),
        }


def check_items(items: Sequence[str] | None) -> list[str]:
    """The items asked for, in the report's own order; None means every item."""
    if items is None:
        return list(REPORT_ITEMS)
    if isinstance(items, str) or not all(isinstance(i, str) for i in items):
        raise InvalidInput("items must be a list of report item names")
    unknown = sorted({i for i in items if i not in REPORT_ITEMS})
    if unknown:
        raise InvalidInput(
            f"unknown report item {', '.join(unknown)} (items: {', '.join(REPORT_ITEMS)})"
        )
    if not items:
        raise InvalidInput(f"a report names at least one item ({', '.join(REPORT_ITEMS)})")
    return [i for i in REPORT_ITEMS if i in items]


def has_general_manager(stages: Sequence[StageSpec]) -> bool:
    """Whether the chain has a stage the general manager signs (an alternate, which
    signs only when the usual signer filed it, does not count)."""
    return any(Role.GENERAL_MANAGER in s.roles for s in stages)


def terms(
    kind: str,
    requester: Principal,
    *,
    scope: str | None,
    items: Sequence[str] | None,
    stages: Sequence[StageSpec],
) -> dict[str, Any]:
    """The report columns of a new request (empty for other kinds, which state neither)."""
    if kind != RequestKind.REPORT.value:
        if scope is not None or items is not None:
            raise InvalidInput("only a report request states a scope or items")
        return {}
    scope = scope or "department"
    if scope not in SCOPES:
        raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}")
    departments: list[str] | None
    if scope == "department":
        if not requester.department:
            raise InvalidInput(
                "you belong to no department; a report of every department states scope all"
            )
        departments = [requester.department]
    else:
        if not has_general_manager(stages):
            raise InvalidInput(
                "a report of all departments needs the general manager's approval (Art 10), "
                "and the configured report chain has no general-manager stage"
            )
        departments = None
    return {
        "report_scope": scope,
        "report_departments": departments,
        "report_items": check_items(items),
    }


def stamp(grant: AccessGrant, req: AccessRequest) -> None:
    """Copy what the report request was approved for onto its grant."""
    if req.kind != RequestKind.REPORT.value:
        return
    grant.report_scope = req.report_scope
    grant.report_departments = (
        list(req.report_departments) if req.report_departments is not None else None
    )
    grant.report_items = list(req.report_items) if req.report_items is not None else None


def active_report_grant(session: Session, holder: str, uid: str, *, now: datetime) -> AccessGrant:
    """The holder's active report grant ``uid`` (by grant or request id), or ``NotFound``
    worded the same whether it does not exist or is someone else's."""
    grant = session.exec(
        select(AccessGrant).where(
            AccessGrant.kind == RequestKind.REPORT.value,
            (AccessGrant.uid == uid) | (AccessGrant.request_uid == uid),
        )
    ).first()
    if grant is None or grant.subject != holder:
        raise NotFound(f"you hold no report grant {uid}")
    if grant.state != GrantState.ACTIVE or not grant.not_before <= now < grant.not_after:
        raise InvalidInput(f"report grant {grant.uid} is no longer active; file a new report")
    return grant


def reach(grant: AccessGrant) -> Reach:
    """What ``grant`` covers. A report grant without recorded terms covers nothing:
    counting every department by default is the widening this module exists to stop."""
    if grant.report_scope not in SCOPES or grant.report_items is None:
        raise InvalidInput(
            f"report grant {grant.uid} records no departments or items; file a new report"
        )
    departments = None if grant.report_scope == "all" else tuple(grant.report_departments or ())
    return Reach(
        grant=grant.uid,
        scope=grant.report_scope,
        departments=departments,
        items=tuple(i for i in REPORT_ITEMS if i in grant.report_items),
    )
