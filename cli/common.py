"""What every command shares: the data directory option, consoles, opening the vault,
the operator as an audit actor, progress bars and the closing checkpoint."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from audit.errors import AuditIntegrityError
from audit.events import Actor
from cli.operator import current_actor, establish
from foundation.settings import Settings
from policies.version import policy_files, record_policy_version
from vault.keys import key_file_is_sealed
from vault.store import ArchiveStore
from vault.vault import open_vault

console = Console()
err = Console(stderr=True)

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir", help="Where the vault keeps its database and keys.", envvar="VAULT_DATA_DIR"
    ),
]
DEFAULT_DATA_DIR = Path("./var")


def settings_for(data_dir: Path) -> Settings:
    """The settings; a passphrase-protected key file's passphrase is asked for at a terminal
    when the environment gives none (it then stays in this process only)."""
    settings = Settings(data_dir=data_dir)
    if (
        settings.key_provider == "file"
        and not settings.key_passphrase.get_secret_value()
        and settings.key_passphrase_file is None
        and sys.stdin.isatty()
        and key_file_is_sealed(settings.resolved_key_file)
    ):
        typed = getpass.getpass(f"Passphrase for key file {settings.resolved_key_file}: ")
        settings = Settings(data_dir=data_dir, key_passphrase=SecretStr(typed))
    return settings


def cli_actor() -> Actor:
    """Who this command's entries name: the operator established by ``open_store``
    (``--as NAME``), else the operating-system account (``cli.operator``)."""
    return current_actor()


def open_store(data_dir: Path, *, changes: bool = True, adds_admin: bool = False) -> Any:
    """Open the vault for a command; one that ``changes`` it first establishes its operator
    (``adds_admin``: ``user add --role admin``, see ``cli.operator.establish``)."""
    store = ArchiveStore(open_vault(settings_for(data_dir)))
    if changes:
        establish(store, adds_admin=adds_admin)
    record_policy(store)
    return store


def record_policy(store: Any) -> None:
    """Policy files changed since the last run? Then that is an audited event (policy:change)."""
    record_policy_version(
        store.engine, store.audit, actor=cli_actor(), files=policy_files(store.settings.schema_file)
    )


def finish(store: Any) -> None:
    """Sign a checkpoint covering what this command appended (C2SP tlog-checkpoint).

    The command's own work is committed by now. When the log cannot be signed
    because it fails its integrity checks (an entry whose MAC fails, a tail
    cut beneath a checkpoint), nothing is signed over it and the operator is
    told, in one line, what to run; the command itself still succeeded.
    """
    checkpoint = getattr(store.audit, "checkpoint_if_new", None)
    if checkpoint is None:
        return
    try:
        checkpoint()
    except AuditIntegrityError as exc:
        err.print(
            Text.assemble(
                ("warning:", "yellow"),
                f" the audit log was not signed: {exc}",
            )
        )


class RateColumn(ProgressColumn):
    """Items per second of a task ("12,345 rows/s"): Rich's estimate over its recent
    updates, else the average since the task started."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed if task.finished else task.speed
        if speed is None and task.elapsed:
            speed = task.completed / task.elapsed
        if speed is None:
            return Text(f"– {self.unit}/s", style="progress.data.speed")
        return Text(f"{speed:,.0f} {self.unit}/s", style="progress.data.speed")


@contextmanager
def progress_bar(unit: str | None = None) -> Iterator[Progress]:
    """A progress display on stderr, only when stderr is a terminal (or VAULT_PROGRESS=1),
    so redirected output and JSON on stdout never carry it; ``unit`` adds a rate column."""
    columns: list[ProgressColumn] = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
    ]
    if unit is not None:
        columns.append(RateColumn(unit))
    columns.append(TimeRemainingColumn())
    with Progress(
        *columns,
        console=err,
        transient=False,
        disable=not err.is_terminal and os.environ.get("VAULT_PROGRESS") != "1",
    ) as bar:
        yield bar


def read_password(from_stdin: bool, *, prompt: str = "Password", confirm: bool = False) -> str:
    """A password from one line of stdin, or asked at the terminal (never echoed).

    Without a terminal and without ``--password-stdin`` it stops with a usage
    error rather than read a password from a pipe someone else may be feeding.
    """
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        err.print(
            f"[red]error:[/] no terminal to ask for the {prompt.lower()}; use --password-stdin"
        )
        raise typer.Exit(2)
    first = typer.prompt(prompt, hide_input=True)
    if confirm and typer.prompt("Again", hide_input=True) != first:
        err.print("[red]error:[/] the passwords differ")
        raise typer.Exit(2)
    return str(first)
