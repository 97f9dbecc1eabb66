"""Who runs a command: a named vault administrator, not only an operating-system account.

Every command used to be audited as ``cli:<os user>``. On a machine where several
administrators share that account (root, a service account), the log could not
tell them apart. A command therefore runs as a named vault user (``--as NAME``,
or ``VAULT_OPERATOR``) whose password is checked exactly like a sign-in: the
same Argon2 check, failure counters, locks and ``login`` / ``login:failed``
entries. The user must be enabled and hold ``admin``. Its entries then carry
the vault user as the actor and ``cli:<os user>`` as the client, so both are on
record.

Once a vault has had an administrator, a command that changes anything refuses
to run without ``--as``; disabling or demoting every administrator does not
switch that off. Before that (a new vault being set up by ``init`` and its first
``user add``), and on demo vaults, it runs as ``cli:<os user>`` as before. When
no enabled administrator is left, the one command that runs without a name is
``user add NAME --role admin``, the way back in. Commands that only read (``keys status``,
``custodians``, ``audit verify``) never ask.

The password is read from ``VAULT_OPERATOR_PASSWORD_FILE`` (a file only its owner
can read, for scheduled jobs), else from ``VAULT_OPERATOR_PASSWORD``, else
asked for on the terminal; it is never echoed, logged or put in an error.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from api.accounts import Accounts
from api.security import TokenService
from audit.events import Actor
from foundation.clock import utcnow
from foundation.secret_file import SecretFileError, read_secret_file
from policies.roles import Role
from vault.demo import is_demo
from vault.errors import VaultError
from vault.models import User, UserRole, table_of

_U = table_of(User)
_R = table_of(UserRole)


class OperatorError(VaultError):
    """The named operator could not be established; the message names why, never a secret."""


@dataclass
class _State:
    name: str | None = None
    actor: Actor | None = None


_state = _State()


def name_operator(name: str | None) -> None:
    """Record ``--as NAME`` for this process (the command line's callback calls it)."""
    _state.name = name.strip() if name and name.strip() else None
    _state.actor = None


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def anonymous_actor() -> Actor:
    """The operating-system account alone: before a vault has administrators, and for reads."""
    return Actor(username=f"cli:{os_user()}", role="system", client="cli")


def current_actor() -> Actor:
    """The established operator, else the operating-system account."""
    return _state.actor or anonymous_actor()


def establish(store: Any, *, adds_admin: bool = False) -> Actor:
    """Authenticate the named operator against this vault, or refuse a command that needs one.

    Called once a command has opened the vault for a change. Raises
    ``OperatorError`` (one line, exit 1) when no name was given but the vault
    has administrators, when the password is wrong or the account locked, or
    when the user is not an enabled administrator.
    """
    if _state.actor is not None:
        return _state.actor
    if _state.name is None:
        if not _administrators(store.engine, ever=True) or is_demo(store.engine, store.vault.keys):
            return anonymous_actor()
        if adds_admin and not _administrators(store.engine, ever=False):
            # Every administrator was disabled or demoted: the one way back is a new one,
            # added as the operating-system account (on record) and used by name after.
            return anonymous_actor()
        raise OperatorError(
            "this vault has administrators, so a command that changes it runs as one of "
            "them: add --as NAME (or set VAULT_OPERATOR), with the password on the "
            "terminal or in VAULT_OPERATOR_PASSWORD_FILE"
        )
    _state.actor = _authenticate(store, _state.name, _password(_state.name))
    return _state.actor


def establish_if_named(store: Any) -> Actor:
    """``restore``: a named operator is checked against the restored users; without a
    name the restore runs as the operating-system account (the database was empty)."""
    return establish(store) if _state.name is not None else anonymous_actor()


def confirm_by_supervisor(store: Any, first: Actor, name: str | None) -> Actor | None:
    """The information supervisor, at this terminal, for what an administrator must not do
    alone.

    Restoring an older backup over a live vault puts back every account, role and
    grant the vault has since disabled, removed or revoked: a widening no single
    person may make. A second administrator would not do: one administrator makes
    another alone, with a password of his choosing. An information supervisor is
    made only with another supervisor's signature (``policies.rolegrants``), and
    no account that ever was an administrator may be one. ``first`` is the
    established operator; when it is the operating-system account (no
    administrators yet, a demo vault) there is no one to ask and None is
    returned. Otherwise ``name`` must be an enabled information supervisor of the
    same vault, whose password is checked exactly like a sign-in
    (``VAULT_CONFIRMER_PASSWORD_FILE``, ``VAULT_CONFIRMER_PASSWORD``, or asked on
    the terminal).
    """
    if _state.name is None:
        return None
    if name is None or not name.strip():
        raise OperatorError(
            "restoring over a vault that has administrators needs its information "
            "supervisor to confirm: add --confirm-by NAME (password on the terminal or in "
            "VAULT_CONFIRMER_PASSWORD_FILE); nothing was changed"
        )
    name = name.strip()
    if name == first.username:
        raise OperatorError(
            "--confirm-by names the operator (--as): the information supervisor, another "
            "person, confirms; nothing was changed"
        )
    password = _password(name, option="--confirm-by", env="VAULT_CONFIRMER_PASSWORD")
    _sign_in(store, name, password, option="--confirm-by")
    if not _holds(store.engine, name, Role.INFO_SUPERVISOR):
        raise OperatorError(
            f"--confirm-by {name}: only an enabled information supervisor confirms a "
            "restore; nothing was changed"
        )
    return Actor(username=name, role=Role.INFO_SUPERVISOR.value, client=f"cli:{os_user()}")


def _administrators(engine: sa.Engine, *, ever: bool) -> bool:
    """Whether an enabled administrator exists, or (``ever``) any account was ever one:
    disabling or demoting the last administrator does not switch names off again."""
    if ever:
        query = sa.select(_U.c.id).where(_U.c.ever_admin == sa.true()).limit(1)
    else:
        query = (
            sa.select(_U.c.id)
            .join(_R, _R.c.user_id == _U.c.id)
            .where(_R.c.role == Role.ADMIN.value, _U.c.disabled == sa.false())
            .limit(1)
        )
    with engine.connect() as conn:
        return conn.execute(query).first() is not None


def _authenticate(store: Any, name: str, password: str) -> Actor:
    _sign_in(store, name, password)
    if not _is_admin(store.engine, name):
        raise OperatorError(f"--as {name}: only an enabled administrator (admin) runs commands")
    return Actor(username=name, role="system", client=f"cli:{os_user()}")


def sign_in_user(store: Any, name: str, password: str) -> None:
    """Check a vault user's own password, exactly as a sign-in (``login`` entries, counters).

    For commands decided for a user other than the operator (``access-report
    --user``): naming someone is not being them. Without this an administrator
    could obtain what only that user may see, recorded in the log as that user's act.
    """
    _sign_in(store, name, password, option="--user")


def _sign_in(store: Any, name: str, password: str, option: str = "--as") -> None:
    vault = store.vault
    client = f"cli:{os_user()}"
    accounts = Accounts(
        vault=vault,
        index=store.index,
        audit=store.audit,
        tokens=TokenService(
            secret=vault.keys.secret("token_signing"),
            issuer=f"archive-vault:{vault.keys.vault_id}",
            ttl=timedelta(minutes=1),
        ),
        clock=utcnow,
    )
    # A success issues nothing: the command itself is the session.
    attempt = accounts.login(name, password, client, utcnow(), issue=lambda *_: ("cli", 0))
    if attempt.retry_after:
        raise OperatorError(
            f"too many failed sign-ins; try again in {int(attempt.retry_after) + 1} s"
        )
    if attempt.token is None:
        raise OperatorError(
            f"{option} {name}: wrong user name or password, or the user is disabled"
        )


def _is_admin(engine: sa.Engine, name: str) -> bool:
    return _holds(engine, name, Role.ADMIN)


def _holds(engine: sa.Engine, name: str, role: Role) -> bool:
    """Whether ``name`` is an enabled account holding ``role`` now."""
    query = (
        sa.select(_U.c.id)
        .join(_R, _R.c.user_id == _U.c.id)
        .where(
            _U.c.username == name,
            _R.c.role == role.value,
            _U.c.disabled == sa.false(),
        )
    )
    with engine.connect() as conn:
        return conn.execute(query).first() is not None


def _password(name: str, option: str = "--as", env: str = "VAULT_OPERATOR_PASSWORD") -> str:
    path = os.environ.get(f"{env}_FILE")
    if path:
        return _password_file(Path(path), f"{env}_FILE")
    given = os.environ.get(env)
    if given:
        return given
    try:
        with open("/dev/tty"):
            pass
    except OSError:
        raise OperatorError(
            f"{option} {name}: no terminal to ask the password on; set {env}_FILE"
        ) from None
    return getpass.getpass(f"password of {name}: ")


def _password_file(path: Path, variable: str) -> str:
    try:
        return read_secret_file(path, variable)
    except SecretFileError as exc:
        raise OperatorError(str(exc)) from None
