"""Operator commands for notifications: deliver queued mail, clear a user's address."""

from __future__ import annotations

from typing import Annotated

import typer

from audit.events import AuditAction, AuditEvent, Outcome
from cli.common import DEFAULT_DATA_DIR, DataDir, cli_actor, console, err, finish, open_store
from foundation.clock import utcnow
from foundation.db import transaction
from policies.mail_delivery import deliver_due
from policies.notifications import set_email

notifications_app = typer.Typer(help="Notifications: deliver queued mail.", no_args_is_help=True)


@notifications_app.command("deliver")
def deliver(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Send the mails that are due (the service does this every minute too).

    Safe to run alongside the service: each mail is claimed before it is sent.
    """
    store = open_store(data_dir)
    if not store.settings.mail_enabled:
        console.print("mail is off (VAULT_SMTP_HOST is empty): nothing to deliver")
        return
    result = deliver_due(store.engine, store.settings, utcnow())
    console.print(
        f"sent: {len(result.sent)}, to retry: {len(result.retried)}, given up: {len(result.failed)}"
    )


def user_set_email(
    username: str,
    email: Annotated[str | None, typer.Argument(help="Refused: people set their own.")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the address.")] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Clear where a user's notifications are mailed (audited as a change of the user).

    Whoever sets an address reads that person's notices, and a loan notice names
    archives and borrowers: people set their own at PUT /me/email, and an
    administrator may only clear one, as ``PATCH /users/{name}`` allows. Setting
    one here is refused and the refusal audited, like the route's. The user is
    told in the vault that it changed.
    """
    if (email is None) == (not clear):
        console.print("give --clear (each person sets their own address at PUT /me/email)")
        raise typer.Exit(2)
    store = open_store(data_dir)
    if email is not None:
        with transaction(store.engine) as session:
            store.audit.append(
                session,
                AuditEvent(
                    action=AuditAction.USER_CHANGE,
                    actor=cli_actor(),
                    outcome=Outcome.DENIED,
                    reason="administrators do not set addresses",
                    detail={"op": "set_email", "user": username[:64]},
                ),
            )
        finish(store)
        err.print(
            "[red]error:[/] administrators may only clear an address (--clear); "
            "each person sets their own at PUT /me/email",
            highlight=False,
        )
        raise typer.Exit(1)
    with transaction(store.engine) as session:
        set_email(session, username, None, audit=store.audit, actor=cli_actor(), now=utcnow())
    finish(store)
    console.print(f"{username}: no address (told in the vault)")


def register(app: typer.Typer, user_app: typer.Typer) -> None:
    app.add_typer(notifications_app, name="notifications")
    user_app.command("set-email")(user_set_email)
