"""Operator commands for notifications: deliver queued mail, set a user's address."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import DEFAULT_DATA_DIR, DataDir, cli_actor, console, finish, open_store
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
    email: Annotated[str | None, typer.Argument(help="The address; omit with --clear.")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the address.")] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Set where a user's notifications are mailed (audited as a change of the user).

    People set their own at PUT /me/email; this is for the operator, who holds the
    key file and the database anyway. The user is told in the vault that it changed.
    """
    if (email is None) == (not clear):
        console.print("give an address, or --clear")
        raise typer.Exit(2)
    store = open_store(data_dir)
    with transaction(store.engine) as session:
        set_email(
            session,
            username,
            None if clear else email,
            audit=store.audit,
            actor=cli_actor(),
            now=utcnow(),
        )
    finish(store)
    console.print(f"{username}: {'no address' if clear else 'address set'} (told in the vault)")


def register(app: typer.Typer, user_app: typer.Typer) -> None:
    app.add_typer(notifications_app, name="notifications")
    user_app.command("set-email")(user_set_email)
