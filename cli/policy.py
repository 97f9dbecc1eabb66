"""``archive-vault policy ...``: explain a decision, check the policy files, show the
approval chains, run the sweeper.

``explain`` answers "may U do A on archive N, and why" exactly as the API would
(same engine, same grants, same clock source) without touching content, so an
information officer or auditor can see which rule, role or grant decides. Errors
print one clear line and exit non-zero (2), never a traceback; ``explain`` exits 0
when the decision allows and 1 when it denies, so scripts can test it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from cli.common import DEFAULT_DATA_DIR, DataDir, settings_for
from foundation.db import transaction
from foundation.settings import Settings
from policies.chains import load_chains
from policies.directory import load_principal
from policies.engine import PolicyEngine
from policies.errors import PolicyError
from policies.loading import load_archive_meta
from policies.roles import Action
from policies.workflow import Workflow
from vault.errors import VaultError
from vault.schema import load_schema
from vault.vault import open_vault

policy_app = typer.Typer(help="Access decisions and the request workflow.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def _run(fn: Any) -> Any:
    try:
        return fn()
    except (PolicyError, VaultError) as exc:
        raise _fail(str(exc)) from None
    except DBAPIError as exc:
        raise _fail(f"database error: {type(exc.orig).__name__}") from None
    except OSError as exc:
        raise _fail(f"{exc.filename or ''} {exc.strerror or exc}".strip()) from None


def _open(data_dir: Path) -> Any:
    return open_vault(Settings(data_dir=data_dir))


@policy_app.command()
def explain(
    user: Annotated[str, typer.Option("--user", help="Username asking.")],
    action: Annotated[str, typer.Option("--action", help="read, update, export, loan, ...")],
    archive: Annotated[str | None, typer.Option("--archive", help="Archive number.")] = None,
    groups: Annotated[str, typer.Option("--groups", help="Comma-separated field groups.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Decide one request now and print the decision with its reason."""
    try:
        act = Action(action)
    except ValueError:
        raise _fail(f"unknown action {action!r} (known: {', '.join(Action)})") from None

    def go() -> Any:
        vault = _open(data_dir)
        with Session(vault.engine) as s:
            engine = PolicyEngine.from_db(s, known_groups=list(vault.schema.groups))
            principal = load_principal(s, user)
            meta = load_archive_meta(s, archive) if archive else None
        wanted = [g.strip() for g in groups.split(",") if g.strip()]
        return engine.decide(principal, act, meta, wanted, now=datetime.now(UTC))

    decision = _run(go)
    if as_json:
        typer.echo(json.dumps(decision.as_dict(), ensure_ascii=False))
    else:
        verdict = "[bold green]ALLOWED[/]" if decision.allowed else "[bold red]DENIED[/]"
        console.print(f"{verdict} {user} {act}{' ' + archive if archive else ''}")
        console.print(decision.why, highlight=False, markup=False)
        if decision.groups:
            console.print(f"clear groups: {', '.join(decision.groups)}", highlight=False)
        if decision.masked_groups:
            console.print(f"masked groups: {', '.join(decision.masked_groups)}", highlight=False)
    if not decision.allowed:
        raise typer.Exit(1)


@policy_app.command()
def check(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Load model.conf, policy.csv and chains.toml and report whether they are valid.

    The field groups they may name are those of the profile schema the vault in
    ``--data-dir`` is configured with; no database is opened.
    """
    groups = _run(lambda: tuple(load_schema(settings_for(data_dir).schema_file).groups))
    engine = _run(lambda: PolicyEngine(chains=load_chains(), known_groups=groups))
    lines = len(engine.base_lines)
    console.print(f"policy ok: {lines} base lines, {len(engine.chains.kinds)} request kinds")


@policy_app.command()
def chains(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Print every request kind's approval chain (as a compliance officer reads it).

    The chains are policy files installed with the vault, the same for every data
    directory; ``--data-dir`` is taken as every command takes it.
    """
    spec = _run(load_chains)
    rows = []
    for kind in spec.kinds.values():
        for i, stage in enumerate(kind.stages, 1):
            when = []
            if stage.when_classification:
                when.append("classification in " + "/".join(stage.when_classification))
            if stage.when_external is not None:
                when.append("external requester" if stage.when_external else "staff requester")
            rows.append(
                {
                    "kind": kind.kind.value,
                    "stage": i,
                    "signer": stage.label,
                    "when": "; ".join(when) or "always",
                    "article": stage.article,
                }
            )
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    table = Table("kind", "#", "signed by", "when", "rule")
    for r in rows:
        table.add_row(r["kind"], str(r["stage"]), r["signer"], r["when"], r["article"])
    console.print(table)


@policy_app.command()
def sweep(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Expire undecided requests and ended grants; flag overdue loans (audited)."""

    def go() -> Any:
        vault = _open(data_dir)
        log = vault.audit_log()
        with transaction(vault.engine) as s:
            result = Workflow(audit=log, known_groups=list(vault.schema.groups)).sweeper.sweep(
                s, now=datetime.now(UTC)
            )
        checkpoint = getattr(log, "checkpoint_if_new", None)
        if checkpoint is not None:
            checkpoint()
        return result

    result = _run(go)
    console.print(
        f"expired requests: {len(result.expired_requests)}, expired grants: "
        f"{len(result.expired_grants)}, overdue loans: {len(result.overdue_loans)}, "
        f"ended web sessions removed: {result.purged_web_sessions}"
    )
