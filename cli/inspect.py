"""``archive-vault inspect``: the half-yearly inspection (Art 14), its report and its check.

``inspect`` walks every archive (a progress bar), verifies the audit log, lists
the register's loose ends, signs the report with the audit key, stores it and
records it in the audit log; ``--out``/``--html`` write the report. ``inspect
verify`` checks a report's signature offline; ``inspect --due`` says when the
last inspection was and whether the next is due; ``inspect list`` the record.
Exit codes: 0 fine, 1 integrity failed (or verification failed, or due), 2 could
not run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from audit.checkpoint import load_public_key_pem
from audit.report_signature import verify_report
from cli.common import DEFAULT_DATA_DIR, DataDir, cli_actor, console, err, finish, open_store
from cli.common import progress_bar as bar_of
from foundation.clock import utcnow
from foundation.settings import Settings
from policies.inspection import Inspections, report_of
from policies.inspection_html import render_html
from vault.vault import open_vault

inspect_app = typer.Typer(
    help="The half-yearly inspection (Art 14): run, verify a report, the record.",
    invoke_without_command=True,
)
NAMED = 20


def _service(data_dir: Path) -> tuple[Any, Inspections]:
    store = open_store(data_dir)
    return store, Inspections(store=store, audit=store.audit, clock=utcnow)


def _write(path: Path, text: str) -> None:
    """Written whole or not at all (a temporary file beside it, then renamed).

    The temporary name is predictable (the process id): in a directory others can
    write to, a link planted there would have made the vault's account write the
    report through it, over any file it may write. It is created afresh, never
    through a link (``O_EXCL|O_NOFOLLOW``), readable by its owner only.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # a leftover, or a link planted to redirect the write
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


@inspect_app.callback()
def inspect(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option("--out", help="Write the signed JSON report.")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Write a readable HTML page.")] = None,
    due: Annotated[
        bool, typer.Option("--due", help="Only say when the last one was and if one is due.")
    ] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Inspect the whole vault: every ciphertext, the audit log, loans, retention, keepers."""
    if ctx.invoked_subcommand is not None:
        return
    store, service = _service(data_dir)
    if due:
        state = service.due()
        line = state.line(utcnow())
        console.print(Text(line, style="yellow" if state.due else ""))
        raise typer.Exit(1 if state.due else 0)
    with bar_of() as bar:
        tasks: dict[str, Any] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        row = service.run(cli_actor(), progress)
    finish(store)
    doc = report_of(row)
    if out is not None:
        _write(out, json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True) + "\n")
    if html is not None:
        _write(html, render_html(doc))
    _summary(doc, row.uid)
    if not doc["body"]["integrity_ok"]:
        raise typer.Exit(1)


def _summary(doc: dict[str, Any], uid: str) -> None:
    body = doc["body"]
    content = body["content"]
    table = Table(title=f"inspection {uid}: {content['archives_checked']} archives")
    for column in ("ciphertext", "ok", "failed"):
        table.add_column(column)
    for kind, tally in content["kinds"].items():
        table.add_row(kind, str(tally["ok"]), str(tally["failed"]))
    cases = body["leak_case_texts"]
    table.add_row("leak case text", str(cases["ok"]), str(cases["failed"]))
    console.print(table)
    failing = [f["archive_no"] for f in content["failing_archives"]]
    if failing:
        more = f" and {len(failing) - NAMED} more" if len(failing) > NAMED else ""
        err.print(Text(f"FAILED archives: {', '.join(failing[:NAMED])}{more}", style="bold red"))
    log = body["audit_log"]
    state = "verified" if log["ok"] else "FAILED"
    console.print(Text(f"audit log: {state}, {log['entries']} entries"))
    for problem in log["problems"][:NAMED]:
        err.print(Text(f"  entry {problem['seq']}: {problem['message']} [{problem['kind']}]"))
    for key, part in body["findings"].items():
        console.print(Text(f"{key.replace('_', ' ')}: {part['total']}"))
    console.print(
        Text(f"report sha256 {doc['signature']['body_sha256']}, recorded in the audit log")
    )


@inspect_app.command("verify")
def verify(
    report: Annotated[Path, typer.Argument(help="A signed report (inspect --out).")],
    pubkey: Annotated[
        Path | None,
        typer.Option("--pubkey", help="The audit key's PEM (`archive-vault audit pubkey`)."),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Pin the key of this vault instead of --pubkey."),
    ] = None,
) -> None:
    """Check a report's signature offline: against --pubkey, a vault's key, or the key it names."""
    try:
        doc = json.loads(report.read_text("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        err.print(f"[bold red]error:[/] cannot read {report} as a JSON report", highlight=False)
        raise typer.Exit(2) from None
    pinned = None
    if pubkey is not None:
        try:
            pinned = load_public_key_pem(pubkey.read_bytes())
        except (OSError, ValueError):
            err.print(f"[bold red]error:[/] {pubkey} is not an Ed25519 public key (PEM)")
            raise typer.Exit(2) from None
    elif data_dir is not None:
        pinned = open_vault(Settings(data_dir=data_dir)).keys.audit_signing_key().public_key()
    verdict = verify_report(doc, pinned)
    if not verdict.ok:
        err.print(Text.assemble(("FAILED", "bold red"), f" {verdict.why}"))
        raise typer.Exit(1)
    how = "the pinned key" if verdict.pinned else "the key it names (not pinned: pass --pubkey)"
    console.print(Text(f"OK: {verdict.why} with {how}; key sha256 {verdict.fingerprint}"))


@inspect_app.command("list")
def list_inspections(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """The recorded inspections, newest first, and whether the next is due."""
    _store, service = _service(data_dir)
    rows, total = service.page(limit=limit)
    table = Table(title=f"{total} inspection(s)")
    for column in ("inspection", "started", "by", "clean", "report sha256", "audit seq"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.uid,
            row.started_at.isoformat(timespec="seconds"),
            row.actor,
            "yes" if row.clean else "no",
            row.report_sha256,
            str(row.audit_seq),
        )
    console.print(table)
    state = service.due()
    console.print(Text(state.line(utcnow()), style="yellow" if state.due else ""))
