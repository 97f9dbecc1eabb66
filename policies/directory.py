"""Users and their roles: the database side of "who is this principal".

Roles and attributes live in ``app_user``/``user_role`` (vault.models) and are
read fresh for every principal, so removing a role or disabling a user takes
effect on the next request, not when a cached token or engine happens to expire.
Every change appends a ``user:change`` audit entry when given a sink.

``add_user`` and ``set_roles`` give roles directly: they are the library path for
bootstrapping (``init``/``demo``/seed, tests, the CLI before the first information
supervisor exists). The API and the CLI go through ``policies.rolegrants``, which
files a role request for every role that reads content. Both paths refuse such a
role to any account that holds or ever held ``admin`` (``User.ever_admin``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from audit.events import SYSTEM, Actor, AuditAction, AuditEvent, AuditSink
from foundation.rawsql import Raw, RawTx
from policies.decision import Principal
from policies.errors import InvalidInput, Refused, UnknownUser, UserDisabled
from policies.models import PolicyCounter
from policies.roles import SIGNED_ROLES, Clearance, Role
from vault.models import User, UserRole, VaultMeta


def _roles(roles: Iterable[str]) -> list[str]:
    if isinstance(roles, str):
        roles = [r for r in roles.split(",") if r]
    out = []
    for role in roles:
        try:
            out.append(Role(role.strip()).value)
        except ValueError:
            raise InvalidInput(
                f"unknown role {role!r} (known: {', '.join(Role.__members__.values())})"
            ) from None
    return sorted(set(out))


def check_combination(roles: list[str], external: bool, credential_ref: str | None) -> None:
    if external != (Role.EXTERNAL in roles):
        raise InvalidInput(
            "the external role and the external flag go together: a visitor "
            "is external and holds only the external role"
        )
    if external and roles != [Role.EXTERNAL]:
        raise InvalidInput("a visitor from outside the company holds only the external role")
    if external and not (credential_ref or "").strip():
        raise InvalidInput(
            "a visitor must register an introduction letter or work-ID number "
            "(credential_ref, Art 18.4)"
        )


# Written the first time anyone is given ``info_supervisor``: from then on role
# grants need that supervisor's signature, also from the CLI (policies.rolegrants).
ROLES_NEED_APPROVAL = "roles_need_approval"


def check_admin_separation(username: str, ever_admin: bool, roles: Iterable[str]) -> None:
    """An account that holds or ever held ``admin`` never holds a role that reads content,
    nor ``compliance`` (which reads every request and the whole audit trail).

    Otherwise an administrator could make an account, give it archives, drop its
    admin role and read, or make himself the reader of every request's reason
    (administrators never see content).
    """
    wanted = set(roles)
    content = sorted(wanted & SIGNED_ROLES)
    if content and (ever_admin or Role.ADMIN in wanted):
        raise Refused(
            f"{username} holds or has held the admin role, so it never gets a role that "
            f"reads content or requests ({', '.join(content)}); use a separate personal "
            "account",
            rule="ever-admin",
        )


def _mark_roles(session: Session, user: User, role_list: list[str]) -> None:
    if Role.ADMIN in role_list and not user.ever_admin:
        user.ever_admin = True
        session.add(user)
    if Role.INFO_SUPERVISOR in role_list and session.get(VaultMeta, ROLES_NEED_APPROVAL) is None:
        session.add(VaultMeta(key=ROLES_NEED_APPROVAL, value="1"))


def roles_need_approval(session: Session) -> bool:
    """Whether the vault is past its first bootstrap (someone was made info supervisor)."""
    return session.get(VaultMeta, ROLES_NEED_APPROVAL) is not None


def _get(session: Session, username: str) -> User:
    user = session.exec(select(User).where(User.username == username)).first()
    if user is None:
        raise UnknownUser(f"no user {username!r}")
    return user


def add_user(
    session: Session,
    *,
    username: str,
    roles: Iterable[str],
    department: str = "",
    clearance: str = "internal",
    external: bool = False,
    credential_ref: str | None = None,
    display_name: str = "",
    audit: AuditSink | None = None,
    actor: Actor = SYSTEM,
    allow_no_roles: bool = False,
) -> User:
    """Create a user with roles; refuses duplicates, unknown roles and visitors without
    a registered credential. ``allow_no_roles`` creates an account whose roles are
    still to be approved (``policies.rolegrants``)."""
    username = username.strip()
    if not username or len(username) > 64 or any(c.isspace() for c in username):
        raise InvalidInput("username must be 1-64 characters without spaces")
    role_list = _roles(roles)
    if not role_list and not allow_no_roles:
        raise InvalidInput("a user needs at least one role")
    try:
        clearance = Clearance(clearance).value
    except ValueError:
        raise InvalidInput(f"clearance must be one of {', '.join(Clearance)}") from None
    if role_list:
        check_combination(role_list, external, credential_ref)
    check_admin_separation(username, False, role_list)
    if session.exec(select(User.id).where(User.username == username)).first() is not None:
        raise InvalidInput(f"user {username!r} already exists")
    user = User(
        username=username,
        display_name=display_name,
        department=department,
        clearance=clearance,
        external=external,
        credential_ref=credential_ref,
    )
    session.add(user)
    session.flush()
    assert user.id is not None
    for role in role_list:
        session.add(UserRole(user_id=user.id, role=role))
    _mark_roles(session, user, role_list)
    session.flush()
    if audit is not None:
        audit.append(
            session,
            AuditEvent(
                action=AuditAction.USER_CHANGE,
                actor=actor,
                detail={
                    "op": "add",
                    "user": username,
                    "roles": role_list,
                    "department": department or None,
                    "clearance": clearance,
                    "external": external,
                },
            ),
        )
    return user


def get_roles(session: Session, username: str) -> list[str]:
    user = _get(session, username)
    return sorted(session.exec(select(UserRole.role).where(UserRole.user_id == user.id)).all())


def set_roles(
    session: Session,
    username: str,
    roles: Iterable[str],
    *,
    audit: AuditSink | None = None,
    actor: Actor = SYSTEM,
) -> list[str]:
    """Replace a user's roles (an empty list leaves them with no access at all)."""
    user = _get(session, username)
    role_list = _roles(roles)
    check_combination(role_list, user.external, user.credential_ref) if role_list else None
    check_admin_separation(username, user.ever_admin, role_list)
    before = get_roles(session, username)
    for row in session.exec(select(UserRole).where(UserRole.user_id == user.id)).all():
        session.delete(row)
    session.flush()
    assert user.id is not None
    for role in role_list:
        session.add(UserRole(user_id=user.id, role=role))
    _mark_roles(session, user, role_list)
    session.flush()
    if audit is not None:
        audit.append(
            session,
            AuditEvent(
                action=AuditAction.USER_CHANGE,
                actor=actor,
                detail={"op": "set_roles", "user": username, "before": before, "after": role_list},
            ),
        )
    return role_list


def disable_user(
    session: Session,
    username: str,
    *,
    audit: AuditSink | None = None,
    actor: Actor = SYSTEM,
) -> User:
    """Disable a user: ``load_principal`` refuses them from the next request on."""
    user = _get(session, username)
    user.disabled = True
    session.add(user)
    session.flush()
    revoke_tokens(session, username)
    if audit is not None:
        audit.append(
            session,
            AuditEvent(
                action=AuditAction.USER_CHANGE,
                actor=actor,
                detail={"op": "disable", "user": username},
            ),
        )
    return user


def revoke_tokens(session: Session, username: str) -> int:
    """Revoke every token issued to ``username`` so far; returns the new generation.

    Tokens carry the generation they were issued under and ``load_principal``
    accepts only the current one, so this takes effect on the next request of
    every worker, whatever the clocks say (a token issued in the same second
    as a password change is revoked too). One atomic increment: two concurrent
    revocations both count.
    """
    row = (
        session.connection()
        .execute(
            sa.update(_U)
            .where(_U.c.username == username)
            .values(token_generation=_U.c.token_generation + 1)
            .returning(_U.c.token_generation)
        )
        .first()
    )
    if row is None:
        raise UnknownUser(f"no user {username!r}")
    for user in session.identity_map.values():  # keep loaded objects in step
        if isinstance(user, User) and user.username == username:
            set_committed_value(user, "token_generation", row[0])
    return int(row[0])


def users_with_role(session: Session, role: str) -> list[str]:
    """Enabled usernames holding ``role`` (for queues and notifications)."""
    return sorted(
        session.exec(
            select(User.username)
            .join(UserRole, col(UserRole.user_id) == col(User.id))
            .where(UserRole.role == role, User.disabled == False)  # noqa: E712
        ).all()
    )


def load_principal(
    session: Session | Connection | RawTx,
    username: str,
    *,
    token_issued_at: datetime | None = None,
    token_generation: int | None = None,
) -> Principal:
    """The principal for a username, fresh from the database; refuses disabled users.

    Runs on every API request (so disabling is instant): one Core query joining
    the user and their roles, no ORM objects. Given a token's generation, a
    token from an earlier generation (before a password change, reset or
    disabling) is refused.
    """
    rows = _PRINCIPAL_RAW.all(session, {"u": username})
    return _principal_of(rows, username, token_issued_at, token_generation)


def load_principal_counted(
    session: Session | Connection | RawTx,
    username: str,
    counters: Sequence[str],
    *,
    token_issued_at: datetime | None = None,
    token_generation: int | None = None,
) -> tuple[Principal, dict[str, int]]:
    """``load_principal``, and the named ``policy_counter`` rows read in the same statement.

    The audited read needs both on every request (the principal, and the
    counters its grants and decoys catch up by): one round trip instead of two.
    A counter not yet created reads as 0. Nothing is read from the counters'
    values before the principal has passed every check.
    """
    params: dict[str, Any] = {f"c{i}": name for i, name in enumerate(counters)}
    params["u"] = username
    rows = _principal_counted(len(counters)).all(session, params)
    principal = _principal_of(rows, username, token_issued_at, token_generation)
    first = rows[0]
    values = first[len(first) - len(counters) :]
    return principal, {name: int(v or 0) for name, v in zip(counters, values, strict=True)}


def _principal_of(
    rows: Sequence[Any],
    username: str,
    token_issued_at: datetime | None,
    token_generation: int | None,
) -> Principal:
    """The principal from ``_PRINCIPAL``'s rows (one per role), or the refusal."""
    if not rows:
        raise UnknownUser(f"no user {username!r}")
    _name, department, clearance, external, disabled, valid_after, generation, _role = rows[0][:8]
    if disabled:
        raise UserDisabled(f"user {username!r} is disabled")
    if token_issued_at is not None and valid_after is not None and token_issued_at < valid_after:
        raise UserDisabled(f"tokens of {username!r} issued before its password change are revoked")
    if token_generation is not None and token_generation != generation:
        raise UserDisabled(f"earlier tokens of {username!r} are revoked")
    return Principal(
        username=username,
        roles=frozenset(r[7] for r in rows if r[7] is not None),
        department=department,
        clearance=clearance,
        external=bool(external),
    )


_U = User.__table__  # type: ignore[attr-defined]
_R = UserRole.__table__  # type: ignore[attr-defined]
_PRINCIPAL = (
    sa.select(
        _U.c.username,
        _U.c.department,
        _U.c.clearance,
        _U.c.external,
        _U.c.disabled,
        _U.c.tokens_valid_after,
        _U.c.token_generation,
        _R.c.role,
    )
    .select_from(_U.outerjoin(_R, _R.c.user_id == _U.c.id))
    .where(_U.c.username == sa.bindparam("u"))
)
_PRINCIPAL_RAW = Raw(_PRINCIPAL)


@functools.cache
def _principal_counted(count: int) -> Raw:
    """``_PRINCIPAL`` with ``count`` named counter values as extra columns."""
    counter = PolicyCounter.__table__  # type: ignore[attr-defined]
    values = [
        sa.select(counter.c.value)
        .where(counter.c.name == sa.bindparam(f"c{i}"))
        .scalar_subquery()
        .label(f"counter_{i}")
        for i in range(count)
    ]
    return Raw(_PRINCIPAL.add_columns(*values))
