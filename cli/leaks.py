"""``archive-vault leaks ...``: the legal clocks of leak cases, for the operator.

The operator is not a handler (Art 27): these commands show which cases exist,
their state and their notification deadlines (overdue first) and print the
notice text, never what was reported, by whom, or about which account
(``policies.leak_operator``); each is an audit entry. There is no ``leaks file``:
a report is a person's (Art 27), filed with their own account at ``POST /leaks``
or on the web pages, so the handlers know whom to ask; the operator's ``cli:``
identity is nobody's. Cases are handled over HTTP by the handlers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.common import DEFAULT_DATA_DIR, DataDir, cli_actor, console, finish, open_store
from foundation.clock import utcnow
from foundation.db import transaction
from policies import leak_operator

leaks_app = typer.Typer(
    help="Leak cases: states and notification deadlines (not the cases' content).",
    no_args_is_help=True,
)
CaseArg = Annotated[str, typer.Argument(help="The case number, LK-…")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _uid(uid: str) -> str:
    if not re.fullmatch(r"LK-[0-9A-F]{10}", uid):
        console.print(f"[red]error:[/] not a case number: {uid[:20]!r} (LK- and 10 hex digits)")
        raise typer.Exit(2)
    return uid


def _when(value: str | None) -> str:
    return value[:16].replace("T", " ") if value else "-"


def _due(clock: dict[str, Any]) -> str:
    if clock["notified_at"]:
        return f"told {_when(clock['notified_at'])}" + (" (late)" if clock["late"] else "")
    if clock["due_at"] is None:
        return "-"
    return (
        f"[red]OVERDUE {_when(clock['due_at'])}[/]" if clock["overdue"] else _when(clock["due_at"])
    )


def _run(data_dir: Path, fn: Any) -> Any:
    """One transaction: the look and its audit entry; then the closing checkpoint."""
    store = open_store(data_dir)
    with transaction(store.engine) as session:
        result = fn(store, session)
    finish(store)
    return result


@leaks_app.command("list")
def list_cases(
    overdue: Annotated[
        bool, typer.Option("--overdue", help="Only cases owing a notice past its deadline.")
    ] = False,
    as_json: AsJson = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Cases, overdue first: state, customers affected, the two notice deadlines.

    Exits 1 when any case owes a notice past its deadline, so a cron job can alert."""
    rows = _run(
        data_dir,
        lambda store, s: leak_operator.list_cases(
            s, store.audit, cli_actor(), utcnow(), overdue=overdue
        ),
    )
    late = sum(1 for r in rows if r["overdue"])
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False))
        raise typer.Exit(1 if late else 0)
    table = Table(title="Leak cases" + (" (overdue)" if overdue else ""))
    table.add_column("case", no_wrap=True, min_width=13)
    for column in ("state", "source", "opened", "customers", "regulator", "individuals"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["uid"],
            r["state"] + (f" ({r['outcome']})" if r["outcome"] else ""),
            r["rule"] or r["source"],
            _when(r["created_at"]),
            str(r["customers"]) if r["pi_affected"] else "-",
            _due(r["regulator"]),
            _due(r["individuals"]),
        )
    console.print(table)
    if late:
        console.print(f"[red]{late} case(s) owe a notice past its deadline[/] (PIPL Art 57)")
        raise typer.Exit(1)


@leaks_app.command("show")
def show(uid: CaseArg, as_json: AsJson = False, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """One case's state, deadlines and history (kinds of steps; no text, no names)."""
    case = _uid(uid)
    row = _run(
        data_dir,
        lambda store, s: leak_operator.show_case(s, store.audit, cli_actor(), case, utcnow()),
    )
    if as_json:
        typer.echo(json.dumps(row, ensure_ascii=False))
        return
    table = Table(title=f"Leak case {row['uid']}", show_header=False)
    for key, value in (
        ("state", row["state"] + (f" ({row['outcome']})" if row["outcome"] else "")),
        ("source", row["rule"] or row["source"]),
        ("opened", _when(row["created_at"])),
        ("archives named", str(row["archives"])),
        ("personal information", "affected" if row["pi_affected"] else "not found affected"),
        ("customers", str(row["customers"])),
        ("field groups", ", ".join(row["groups"]) or "-"),
        ("regulator", _due(row["regulator"])),
        ("individuals", _due(row["individuals"])),
    ):
        table.add_row(key, value)
    console.print(table)
    history = Table("at", "kind", "what", title="History")
    for e in row["history"]:
        history.add_row(_when(e["at"]), e["kind"], e["what"])
    console.print(history)


@leaks_app.command("notice")
def notice(
    uid: CaseArg,
    lang: Annotated[str, typer.Option("--lang", help="zh, en or both.")] = "both",
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """The notice text (PIPL Art 57) in Chinese and English: facts and group names only."""
    case = _uid(uid)
    if lang not in ("zh", "en", "both"):
        console.print("[red]error:[/] --lang is zh, en or both")
        raise typer.Exit(2)
    texts = _run(
        data_dir,
        lambda store, s: leak_operator.notice(
            s, store.audit, cli_actor(), case, store.schema, store.settings
        ),
    )
    for key in ("zh", "en"):
        if lang in (key, "both"):
            console.print(texts[key], highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(leaks_app, name="leaks")
