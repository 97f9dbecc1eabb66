"""``archive-vault user ...``: adding, disabling, re-roling and resetting accounts.

The roles that read content and compliance are filed as role requests the
information supervisor signs (``policies.rolegrants``), except at a vault's first
bootstrap; from then on an administrator sets a password only for an
administrator's account, and any other account is activated by a one-time
two-code reset, as ``POST /users`` does.
"""

from __future__ import annotations

from typing import Annotated

import typer
from sqlmodel import Session

from api.security import hash_password
from cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    cli_actor,
    console,
    err,
    finish,
    open_store,
    read_password,
)
from foundation.clock import utcnow
from foundation.db import transaction
from policies.custodians import check_may_disable, drops_keeper_role
from policies.decision import Principal
from policies.directory import disable_user, roles_need_approval
from policies.errors import PolicyError, Refused
from policies.password_reset import IssuedReset, ResetKeys, issue
from policies.rolegrants import RoleOutcome, change_roles, create_user
from policies.roles import Role
from policies.workflow import Workflow
from vault.records import parse_username, plain_text
from vault.store import ArchiveStore

user_app = typer.Typer(
    help="Users: add, disable, set roles, issue a password reset.", no_args_is_help=True
)


def _role_desk(store: ArchiveStore) -> tuple[Workflow, Principal]:
    """The workflow that files role requests and the CLI operator as their filer.

    The operator acts as the administrator they are; like an administrator in the
    API, they file role requests and never sign them.
    """

    actor = cli_actor()
    filer = Principal(username=actor.username, roles=frozenset({"admin"}))
    return Workflow(audit=store.audit), filer


def _report_roles(username: str, outcome: RoleOutcome, bootstrap: bool) -> None:
    roles = ", ".join(outcome.roles) or "none yet"
    req = outcome.request
    if bootstrap:
        console.print(
            "[yellow]first bootstrap:[/] nobody has been information supervisor yet, so "
            "roles are given directly; from the first supervisor on, roles that read "
            "content, and compliance, need the supervisor's signature"
        )
    console.print(f"{username}: {roles}")
    if req is not None:
        console.print(
            f"Role request {req.uid} filed for {', '.join((req.change or {})['add'])}: the "
            f"information supervisor signs it (POST /requests/{req.uid}/approve)"
        )


@user_app.command("add")
def user_add(
    username: Annotated[str, typer.Argument(help="Login name (a-z, 0-9, '.', '_', '-').")],
    role: Annotated[list[str], typer.Option(help="Role (repeatable).")],
    department: Annotated[str, typer.Option(help="Department (部门).")] = "",
    clearance: Annotated[str, typer.Option(help="internal, secret or top_secret.")] = "internal",
    external: Annotated[bool, typer.Option(help="A registered visitor (Art 18.4).")] = False,
    credential: Annotated[str | None, typer.Option(help="Introduction letter or work-ID.")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
    email: Annotated[
        str | None, typer.Option(help="Refused: each person sets their own at PUT /me/email.")
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Add a user. Roles that read content (salesperson, approver roles, external) and
    compliance are filed as a role request the information supervisor signs, except
    during a vault's first bootstrap (before anyone was supervisor).

    From the first supervisor on, an administrator sets a password only for an
    administrator's account: any other account is activated by a one-time reset, its
    first code printed here and the second handed over by the user's department head
    or the information supervisor, as ``POST /users`` does. An administrator who chose
    the password of an account the supervisor then gives a content role could sign in
    as it and read what administrators never see.
    """

    parse_username(username, "username")
    if email is not None:
        # As POST /users: whoever sets an address reads that person's notices.
        err.print(
            "[red]error:[/] --email: administrators do not set addresses; "
            "each person sets their own at PUT /me/email"
        )
        raise typer.Exit(2)
    department = plain_text(department, "department", 64)
    credential = plain_text(credential, "credential", 128) if credential is not None else None
    store = open_store(data_dir, adds_admin=set(role) == {"admin"})
    try:
        with Session(store.engine) as session:
            # admin with any other role is refused by create_user (ever-admin separation)
            activated = roles_need_approval(session) and Role.ADMIN.value not in role
        hashed = None if activated else _new_password(password_stdin)
        if activated and password_stdin:
            err.print(
                "[red]error:[/] --password-stdin: an administrator sets no password for an "
                "account that is not an administrator's; it is activated by a one-time reset "
                "(drop --password-stdin: the first code is printed, the second goes to the "
                "user's department head or the information supervisor)"
            )
            raise typer.Exit(2)
        outcome, bootstrap, issued = _create(store, username, role, hashed, department=department,
                                             clearance=clearance, external=external,
                                             credential=credential)  # fmt: skip
    finally:
        finish(store)
    console.print(f"Added {username}")
    _report_roles(username, outcome, bootstrap)
    if issued is not None:
        console.print(
            f"Activation {issued.uid} for {username}: give the user this code: "
            f"{issued.admin_code}\n{issued.holder} received the second code and hands it over "
            f"in person; the user sets a password at POST /auth/password-reset (or the sign-in "
            f"page) with both before {issued.expires_at.isoformat()}. This code is not shown "
            "again."
        )


def _new_password(from_stdin: bool) -> str:
    password = read_password(from_stdin, confirm=True)
    try:
        return hash_password(password)
    except ValueError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


def _create(
    store: ArchiveStore,
    username: str,
    role: list[str],
    hashed: str | None,
    *,
    department: str,
    clearance: str,
    external: bool,
    credential: str | None,
) -> tuple[RoleOutcome, bool, IssuedReset | None]:
    """The account, its roles or role request, and (without a password) its activation, in
    one transaction; a refused activation is audited, then reported by main()."""
    workflow, filer = _role_desk(store)
    try:
        with transaction(store.engine) as session:
            bootstrap = not roles_need_approval(session)
            if hashed is not None and not bootstrap and Role.ADMIN.value not in role:
                # user_add read the password while the bootstrap lasted; it has ended since
                # (the first supervisor was made meanwhile): no password of his choosing.
                raise Refused(
                    "the vault's first bootstrap ended while the password was being read: an "
                    "administrator sets no password for an account that is not an "
                    "administrator's; run user add again without --password-stdin",
                    rule="activated-by-reset",
                )
            outcome = create_user(
                workflow,
                session,
                filer,
                username=username,
                roles=role,
                department=department,
                clearance=clearance,
                external=external,
                credential_ref=credential,
                now=utcnow(),
                actor=cli_actor(),
                bootstrap=bootstrap,
            )
            issued = None
            if hashed is None:
                session.flush()
                issued = _reset(store, session, username)
            else:
                outcome.user.password_hash = hashed
                session.add(outcome.user)
    except PolicyError as exc:
        if exc.event is not None:
            with transaction(store.engine) as session:
                store.audit.append(session, exc.event)
        raise
    return outcome, bootstrap, issued


def _reset(store: ArchiveStore, session: Session, username: str) -> IssuedReset:
    """A one-time two-code reset of ``username`` issued by the operator (or its refusal)."""
    return issue(
        session,
        username=username,
        issuer=cli_actor(),
        keys=ResetKeys(store.keys),
        audit=store.audit,
        now=utcnow(),
    )


@user_app.command("disable")
def user_disable(username: str, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Disable a user: their tokens stop working at once."""

    store = open_store(data_dir)
    try:
        with transaction(store.engine) as session:
            # A custodian is not disabled while archives would be left without one.
            check_may_disable(session, username)
            disable_user(session, username, audit=store.audit, actor=cli_actor())
    except PolicyError:  # reported by main()
        finish(store)
        raise
    finish(store)
    console.print(f"Disabled {username}")


@user_app.command("reset-password")
def user_reset_password(username: str, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Issue a one-time password reset: the operator never sets an existing user's password.

    The user's tokens are revoked and the old password stops working at once.
    The first code is printed here, once; the second goes to the user's
    department head (or the information supervisor), who hands it over in
    person. The user sets a new password at POST /auth/password-reset with both.
    """

    store = open_store(data_dir)
    try:
        with transaction(store.engine) as session:
            issued = _reset(store, session, username)
    except PolicyError as exc:  # a refusal is audited too, then reported by main()
        if exc.event is not None:
            with transaction(store.engine) as session:
                store.audit.append(session, exc.event)
        finish(store)
        raise
    finish(store)
    console.print(
        f"Reset {issued.uid} for {username}: give the user this code: {issued.admin_code}\n"
        f"{issued.holder} received the second code and hands it over in person; "
        f"the reset expires at {issued.expires_at.isoformat()}. This code is not shown again."
    )


@user_app.command("set-role")
def user_set_role(
    username: str,
    role: Annotated[list[str], typer.Option(help="Role (repeatable); replaces the old ones.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Replace a user's roles: removals at once; roles that read content, and compliance,
    through a role request the information supervisor signs (directly only at first
    bootstrap)."""

    store = open_store(data_dir)
    workflow, filer = _role_desk(store)
    try:
        with transaction(store.engine) as session:
            if drops_keeper_role(session, username, role):
                # Nor does a custodian lose the role that lets them keep archives.
                check_may_disable(session, username)
            bootstrap = not roles_need_approval(session)
            outcome = change_roles(
                workflow,
                session,
                filer,
                username=username,
                roles=role,
                now=utcnow(),
                actor=cli_actor(),
                bootstrap=bootstrap,
            )
    except PolicyError:  # reported by main()
        finish(store)
        raise
    finish(store)
    _report_roles(username, outcome, bootstrap)
