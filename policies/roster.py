"""Who works here, as the people who manage accounts and sign requests need to know.

Two views of ``app_user``, neither with anything secret: administrators list the
accounts (roles, department, whether disabled or a visitor) to manage them;
approvers and compliance look names up to choose a signer or read a chain
(username, display name, department and roles, twenty at most). Password
hashes, reset codes, login counters and credentials never leave this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from policies.request_facts import people
from policies.roles import Role
from policies.visibility import like_literal
from vault.models import User, UserRole

# Who may look names up: those who sign requests, and compliance who reads chains.
LOOKUP_ROLES = frozenset(
    {
        Role.DEPARTMENT_HEAD,
        Role.INFORMATION_OFFICER,
        Role.INFO_SUPERVISOR,
        Role.CS_MANAGER,
        Role.GENERAL_MANAGER,
        Role.COMPLIANCE,
    }
)
LOOKUP_MAX = 20


@dataclass(frozen=True, slots=True)
class UserQuery:
    role: str | None = None
    department: str | None = None
    disabled: bool | None = None
    offset: int = 0
    limit: int = 50

    def filters(self) -> dict[str, Any]:
        given = {"role": self.role, "department": self.department, "disabled": self.disabled}
        return {k: v for k, v in given.items() if v is not None}


def _has_role(role: str) -> sa.ColumnElement[bool]:
    return sa.exists().where(col(UserRole.user_id) == col(User.id), col(UserRole.role) == role)


def list_users(session: Session, query: UserQuery) -> tuple[list[dict[str, Any]], int]:
    """One page of accounts by username, and how many match in all."""
    where: list[sa.ColumnElement[bool]] = []
    if query.role is not None:
        where.append(_has_role(query.role))
    if query.department is not None:
        where.append(col(User.department) == query.department)
    if query.disabled is not None:
        where.append(col(User.disabled) == query.disabled)
    total = session.exec(select(func.count()).select_from(User).where(*where)).one()
    rows = session.exec(
        select(User)
        .where(*where)
        .order_by(col(User.username))
        .offset(query.offset)
        .limit(query.limit)
    ).all()
    found = people(session, (u.username for u in rows))
    return [
        {
            "username": u.username,
            "display_name": u.display_name,
            "department": u.department,
            "roles": list(found[u.username].roles) if u.username in found else [],
            "clearance": u.clearance,
            "external": u.external,
            "disabled": u.disabled,
        }
        for u in rows
    ], int(total)


def lookup(session: Session, text: str, limit: int = LOOKUP_MAX) -> list[dict[str, Any]]:
    """Active accounts whose username starts with ``text`` or whose display name
    contains it (case-insensitive), by username; names, departments and roles only."""
    needle = like_literal(text.strip().lower())
    rows = session.exec(
        select(User.username)
        .where(
            col(User.disabled) == sa.false(),
            sa.or_(
                func.lower(col(User.username)).like(f"{needle}%", escape="\\"),
                func.lower(col(User.display_name)).like(f"%{needle}%", escape="\\"),
            ),
        )
        .order_by(col(User.username))
        .limit(min(limit, LOOKUP_MAX))
    ).all()
    found = people(session, rows)
    return [
        {
            "username": p.username,
            "display_name": p.display_name,
            "department": p.department,
            "roles": list(p.roles),
        }
        for p in (found[name] for name in rows if name in found)
    ]
