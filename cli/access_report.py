"""``archive-vault access-report KH-…``: the customer's access report (PIPL Art 45, GDPR Art 15).

Produced exactly as ``GET /customers/{no}/access-report`` produces it
(``policies.access_report``): decided by the policy for the vault user named
with ``--user`` (compliance, the information supervisor or the customer-service
manager), who signs in with their own password; audited as
``archive:access-report`` under that user from the client ``cli``; a refusal is
audited and exits 1. Names, states and counts, never content.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlmodel import Session

from audit.events import Actor
from cli.common import DEFAULT_DATA_DIR, DataDir, console, finish, open_store, read_password
from cli.operator import sign_in_user
from policies.access_report import AccessReports
from policies.directory import load_principal
from policies.engine import PolicyEngine


def access_report(
    archive_no: Annotated[str, typer.Argument(help="The archive, e.g. KH-2026-000123.")],
    user: Annotated[
        str, typer.Option("--user", help="The vault user asking (compliance or a leak handler).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read --user's password from stdin.")
    ] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """What the vault holds about one customer and who accessed it, when, why.

    ``--user`` signs in with their own password (asked, or ``--password-stdin``), as
    the route needs their token: the report is theirs to see, not the operator's.
    """
    password = read_password(password_stdin, prompt=f"Password of {user}")
    store = open_store(data_dir)
    sign_in_user(store, user, password)
    with Session(store.engine) as session:
        policy = PolicyEngine.from_db(session, known_groups=list(store.schema.groups))
        principal = load_principal(session, user)
    actor = Actor(principal.username, principal.role_label, "cli")
    reports = AccessReports(
        engine=store.engine, audit=store.audit, policy=policy, clock=lambda: datetime.now(UTC)
    )
    try:
        report = reports.report(principal, actor, archive_no)
    finally:
        finish(store)
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    _print(report)


def _print(report: dict[str, Any]) -> None:
    a, held, consent = report["archive"], report["held"], report["consent"]
    console.print(
        f"[bold]{a['archive_no']}[/] {a['classification']} {a['status']}, "
        f"kept until {a['retention_until']}",
        highlight=False,
    )
    groups = ", ".join(g["group"] for g in held["groups"]) or "none"
    console.print(
        f"held: {groups}; {held['interactions']} interactions, {held['attachments']} attachments",
        highlight=False,
    )
    console.print(
        f"consent: {consent['notice'] or '—'} at {consent['at'] or '—'} "
        f"({consent['channel'] or '—'}); groups {', '.join(consent['groups']) or 'none'}; "
        f"{len(consent['withdrawals'])} withdrawals",
        highlight=False,
    )
    table = Table("seq", "when (UTC)", "who", "role", "action", "groups", "purpose", "grant", "to")
    for item in report["accesses"]:
        to = item.get("exported_to") or {}
        table.add_row(
            str(item["seq"]),
            item["at"],
            item["who"],
            item["role"],
            item["action"],
            ",".join(item["groups"]),
            item["purpose"] or "",
            item["grant"] or "",
            to.get("recipient", ""),
        )
    console.print(table)
    if report["truncated"]:
        console.print("[yellow]only the first 10,000 entries about this archive are listed[/]")


def register(app: typer.Typer) -> None:
    app.command("access-report")(access_report)
