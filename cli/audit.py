"""``archive-vault audit ...``: verify, export, checkpoint and search the audit log.

Every command prints one clear line and exits non-zero on failure, never a
traceback: an operator reading a failed ``verify`` needs the first bad entry,
not a stack. Exit codes: 0 fine, 1 verification failed, 2 could not run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from audit.errors import AuditError
from audit.log import AuditLog
from audit.verify import (
    BundleError,
    Problem,
    Report,
    check_against_state,
    load_state,
    save_state,
    verify_bundle_file,
)
from cli.common import DEFAULT_DATA_DIR, DataDir
from cli.verifier import verifier
from foundation.settings import Settings
from vault.backup import record_export
from vault.errors import VaultError
from vault.vault import open_vault

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
audit_app.command()(verifier)
console = Console()
err = Console(stderr=True)
T = TypeVar("T")


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def _open_log(data_dir: Path) -> AuditLog:
    vault = open_vault(Settings(data_dir=data_dir))
    log = vault.audit_log()
    if not isinstance(log, AuditLog):  # pragma: no cover - the vault always builds one
        raise _fail("this vault has no audit log")
    return log


def _run(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except (VaultError, AuditError, BundleError) as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"{exc.filename or ''} {exc.strerror or exc}".strip()) from None


@audit_app.command()
def verify(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state",
            help="Keeps the last accepted checkpoint outside the database; the next run "
            "must extend it (catches a tail cut together with its checkpoints).",
        ),
    ] = None,
) -> None:
    """Re-hash every entry, recompute chain and roots, check every checkpoint signature."""
    log = _run(lambda: _open_log(data_dir))
    with Progress(
        TextColumn("verifying audit log"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("verify", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = _run(lambda: log.verify(progress=progress, workers=None))
    if not report.ok:
        for problem in report.all_problems():
            _failed(problem)
        for note in report.notes:
            err.print(Text(f"  {note}"), soft_wrap=True)
        raise typer.Exit(1)
    if state is not None:
        refused = _run(lambda: _advance_state(log, report, state))
        if refused is not None:
            _failed(refused)
            raise typer.Exit(1)
    console.print(report.summary(), highlight=False)
    for note in report.notes:
        console.print(Text(f"  {note}"))


def _failed(problem: Problem | str | None) -> None:
    """One line per finding; its text is shown literally (a stored row may hold anything)."""
    err.print(Text.assemble(("FAILED", "bold red"), " ", str(problem)), soft_wrap=True)


def _advance_state(log: AuditLog, report: Report, path: Path) -> Problem | str | None:
    """Compare with the checkpoint accepted last time (a consistency proof), then save."""
    latest = report.latest_checkpoint
    if latest is None:
        return "no signed checkpoint to keep yet; run `archive-vault audit checkpoint`"
    old = load_state(path)
    if old is not None:
        size1 = int(old.get("size", 0))
        proofs: list[dict[str, object]] = []
        if 0 < size1 < latest.size:
            proof = log.consistency_proof(size1, latest.size)
            proofs = [{"size1": size1, "size2": latest.size, "proof": [p.hex() for p in proof]}]
        problem = check_against_state(
            old, [latest], {"consistency_proofs": proofs}, log.public_key, log.origin
        )
        if problem is not None:
            return problem
    save_state(path, latest, log.public_key)
    return None


@audit_app.command()
def export(
    out: Annotated[Path, typer.Option("--out", help="Bundle file to write.")],
    prove: Annotated[
        list[int] | None, typer.Option("--prove", help="Add an inclusion proof for this seq.")
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Write an offline-verifiable bundle: entries, checkpoints, public key, proofs."""
    log = _run(lambda: _open_log(data_dir))
    _run(log.checkpoint_if_new)  # so the bundle's tail is covered by a signature
    signed = _run(log.latest_checkpoint)

    def write() -> dict[str, int]:
        tmp = out.with_name(out.name + ".partial")
        tmp.unlink(missing_ok=True)  # a leftover, or a link planted to redirect the write
        # O_EXCL|O_NOFOLLOW: never written through a link someone placed there meanwhile.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            counts = log.export_bundle(fh, prove=prove or [])
        tmp.replace(out)
        return counts

    counts = _run(write)
    # What `restore` compares a backup with: a newer log was published than it holds.
    _run(lambda: record_export(Settings(data_dir=data_dir), out, signed, log))
    console.print(
        f"wrote {out}: {counts['entries']} entries, {counts['checkpoints']} checkpoints, "
        f"{counts['consistency_proofs']} consistency and {counts['inclusion_proofs']} "
        "inclusion proofs",
        highlight=False,
    )


@audit_app.command("verify-bundle")
def verify_bundle_cmd(
    bundle: Annotated[Path, typer.Argument(help="Bundle written by `audit export`.")],
    state: Annotated[
        Path | None, typer.Option("--state", help="Keeps the last accepted checkpoint.")
    ] = None,
    pubkey: Annotated[Path | None, typer.Option("--pubkey", help="PEM key to pin.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Verify a bundle offline (the vault is not opened; ``--data-dir`` is accepted and unused)."""
    del data_dir  # offline on purpose: an auditor's machine has no vault
    report = _run(lambda: verify_bundle_file(bundle, pubkey_file=pubkey, state_file=state))
    if not report.ok:
        _failed(report.problem)
        raise typer.Exit(1)
    console.print(report.summary(), highlight=False)
    for note in report.notes:
        console.print(f"  {note}", highlight=False)


@audit_app.command()
def checkpoint(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Sign a checkpoint now if the log grew since the last one."""
    log = _run(lambda: _open_log(data_dir))
    cp = _run(log.checkpoint)
    if cp is None:
        latest = _run(log.latest_checkpoint)
        size = latest.size if latest else 0
        console.print(f"nothing new to sign (latest checkpoint covers {size} entries)")
        return
    console.print(f"signed checkpoint: {cp.size} entries, root {cp.root_b64}", highlight=False)


@audit_app.command()
def pubkey(
    note_format: Annotated[
        bool, typer.Option("--note", help="Print the signed-note verifier key instead of PEM.")
    ] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Print the public key auditors use to check checkpoint signatures."""
    log = _run(lambda: _open_log(data_dir))
    text = _run(log.verifier_key if note_format else log.public_key_pem)
    typer.echo(text.rstrip("\n"))


def _when(value: str | None, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _fail(f"{what}: {value!r} is not an ISO date or date-time") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        # 0001-01-01T00:00+12:00 parses but has no UTC form: the query would raise
        # OverflowError (an internal error) instead of naming the option.
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise _fail(f"{what}: {value!r} is outside the calendar once taken to UTC") from None


@audit_app.command("log")
def log_cmd(
    actor: Annotated[str | None, typer.Option(help="Only this user.")] = None,
    archive: Annotated[str | None, typer.Option(help="Only entries naming this archive.")] = None,
    action: Annotated[str | None, typer.Option(help="e.g. archive:read")] = None,
    outcome: Annotated[str | None, typer.Option(help="allowed, denied or error")] = None,
    since: Annotated[str | None, typer.Option(help="From this time (ISO, UTC if no zone).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this time (ISO).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    offset: Annotated[int, typer.Option(min=0, max=10_000_000)] = 0,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Search the log (newest first)."""
    log = _run(lambda: _open_log(data_dir))
    start, end = _when(since, "--since"), _when(until, "--until")
    records = _run(
        lambda: log.query(
            actor=actor,
            archive=archive,
            action=action,
            outcome=outcome,
            since=start,
            until=end,
            limit=limit,
            offset=offset,
        )
    )
    table = Table(
        "seq", "time (UTC)", "actor", "role", "action", "outcome", "archives", "groups", "purpose"
    )
    for r in records:
        table.add_row(
            *(
                Text(cell)
                for cell in (
                    str(r.seq),
                    r.time.strftime("%Y-%m-%d %H:%M:%S"),
                    r.actor,
                    r.actor_role,
                    r.action,
                    r.outcome,
                    ", ".join(r.archives[:5]) + (" …" if len(r.archives) > 5 else ""),
                    ", ".join(r.groups),
                    r.purpose or "",
                )
            )
        )
    # Text cells: values come from the log and are shown literally, never as markup.
    console.print(table)
    console.print(f"{len(records)} entries", highlight=False)
