"""Commands on the vault itself: init, upgrade, manifests, the profile schema,
customer import, synthetic seeding and key-encryption keys."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlmodel import Session, select

from audit.events import AuditAction, AuditEvent
from cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    cli_actor,
    console,
    err,
    finish,
    open_store,
    progress_bar,
    record_policy,
    settings_for,
)
from cli.operator import establish
from foundation.db import make_engine, transaction
from foundation.settings import Settings
from policies.archive_creation import import_check
from policies.custodians import review as custodian_review
from vault import migrate
from vault.demo import mark_demo, require_demo
from vault.errors import NotInitialised, VaultError
from vault.importer import ImportFailed, bulk_insert, import_file
from vault.key_health import unreadable_versions
from vault.keys import LEVELS
from vault.manifest import seal_missing
from vault.masked_names import backfill as backfill_masked_names
from vault.models import User
from vault.providers import where
from vault.rotation import kek_counts, rotate
from vault.schema import load_schema
from vault.seed import SyntheticArchives
from vault.store import ArchiveStore
from vault.vault import connect, creating_vault, open_vault

customer_app = typer.Typer(help="Customer archives: import.", no_args_is_help=True)
keys_app = typer.Typer(help="Key-encryption keys: rotate, status.", no_args_is_help=True)
app = typer.Typer()


@app.command()
def init(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo", help="Mark it a demo vault, where `demo` and `seed` may write (never undone)."
        ),
    ] = False,
) -> None:
    """Create a new vault: key file (mode 0600, outside the database) and tables.

    All or nothing: when any step fails, the key file, the SQLite file or the tables it
    made are removed again, so running it again after fixing the cause succeeds.
    """

    settings = settings_for(data_dir)
    with creating_vault(settings) as vault:
        store = ArchiveStore(vault)
        with transaction(vault.engine) as session:
            if demo:
                mark_demo(session, vault.keys)
            store.audit.append(
                session,
                AuditEvent(
                    action=AuditAction.VAULT_INIT,
                    actor=cli_actor(),
                    detail={"vault_id": vault.keys.vault_id, "demo": demo},
                ),
            )
        record_policy(store)
        finish(store)
    kind = "demo vault" if demo else "vault"
    console.print(f"Initialised {kind} [bold]{vault.keys.vault_id[:12]}[/] in {settings.data_dir}")
    console.print(f"  database : {settings.resolved_database_url.split('@')[-1]}")
    if settings.key_provider == "pkcs11":
        console.print(f"  keys     : in {where(settings)} (never leave it)")
    else:
        console.print(
            f"  key file : {settings.resolved_key_file} (mode 0600; back it up separately)"
        )
    console.print(f"  blind-index size : {vault.index_bits} bits")


@app.command()
def upgrade(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Apply pending database migrations (back the database up first)."""

    settings = settings_for(data_dir)
    engine = make_engine(settings.resolved_database_url)
    connect(engine).close()  # an unreachable database is named as such, up front
    before = migrate.current(engine)
    migrate.upgrade(engine)

    migrate.secure(engine, settings.app_role)
    console.print(f"Database schema: {before or 'empty'} → {migrate.head()}")
    _finish_upgrade(settings, engine)


def _finish_upgrade(settings: Settings, engine: Any) -> None:
    """Steps that need the key file: an older key file gets its audit MAC key, and archives
    from before sealed manifests get one. Without the key file the migrations still stand
    and the warning names the command to run once it is back. In a vault whose archives
    all carry manifests, one without is reported as tampering (exit 1), never sealed."""

    try:
        vault = open_vault(settings, engine=engine)
    except NotInitialised:  # a database without a vault yet: nothing to key or seal
        return
    except VaultError as exc:
        err.print(
            f"[yellow]Upgrade not finished:[/] {exc}. Once the key file is back, run "
            "`archive-vault seal-manifests`: archives from before sealed manifests stay "
            "unreadable until it seals them."
        )
        return
    added = vault.audit_mac_added_from
    if added is not None:
        console.print(
            f"Audit MAC key added to {settings.resolved_key_file}: entries from {added} on "
            "carry a MAC; earlier ones are reported as written before MACs"
        )
    _seal(vault)


def _seal(vault: Any) -> None:
    """Seal the manifests of archives from before them, then fill the customer list's masked
    names of archives that have none (both audited), and sign what was appended."""

    store = ArchiveStore(vault)
    try:
        sealed = seal_missing(store, actor=cli_actor())
        console.print(f"Sealed manifests: {sealed} archive(s)")
        with progress_bar() as bar:
            task = bar.add_task("masking names", total=None)
            filled, failed = backfill_masked_names(
                store,
                actor=cli_actor(),
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    finally:
        finish(store)
    console.print(f"Masked names for the customer list: {filled} archive(s)")
    if failed:
        err.print(
            f"[yellow]warning:[/] {failed} archive(s) whose name group does not open kept no "
            "masked name: reads of them fail too; investigate (the audit log, backups)"
        )


@app.command("seal-manifests")
def seal_manifests(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Seal the manifest of field groups of archives written before manifests (after an upgrade),
    and fill the customer list's masked names of archives that have none.

    Once every archive of the vault carries one (always, for a vault created with
    manifests), it seals nothing: archives found without one are named as tampered."""

    settings = settings_for(data_dir)
    vault = open_vault(settings, engine=make_engine(settings.resolved_database_url))
    # Sealing vouches for the archives as they stand: an administrator's act, by name.
    establish(ArchiveStore(vault))
    _seal(vault)


@app.command()
def schema(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    schema_file: Annotated[Path | None, typer.Option(help="Another schema file.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Show the configured profile fields: name, group, labels, type, searchable.

    Without ``--schema-file`` it is the schema the vault in ``--data-dir`` is configured
    with (``VAULT_SCHEMA_FILE``, else the shipped one); it needs no database.
    """
    settings = settings_for(data_dir)
    if schema_file is not None:
        settings = settings.model_copy(update={"schema_file": schema_file})
    sch = load_schema(settings.schema_file)
    if as_json:
        payload = {
            "groups": [
                {
                    "name": g.name,
                    "zh": g.zh,
                    "en": g.en,
                    "sensitive": g.sensitive,
                    "fields": list(g.fields),
                }
                for g in sch.groups.values()
            ],
            "fields": [f.public() for f in sch.fields.values()],
        }
        sys.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
        return
    table = Table(title=f"Profile schema ({len(sch.fields)} fields)")
    for column in ("name", "group", "中文", "English", "type", "searchable", "sensitive"):
        table.add_column(column)
    for f in sch.fields.values():
        table.add_row(
            f.name, f.group, f.zh, f.en, f.type, "yes" if f.searchable else "", f.sensitive or ""
        )
    console.print(table)


_PHASES = {"validating": "validating", "importing": "writing"}


@customer_app.command("import")
def customer_import(
    file: Annotated[Path, typer.Argument(help="JSON Lines (.jsonl) or CSV (.csv) file.")],
    owner: Annotated[str | None, typer.Option(help="Owner for rows without an owner.")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="jsonl or csv.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Import archives, all or nothing: a bad file imports nothing and lists every bad row."""

    store = open_store(data_dir)
    with progress_bar(unit="rows") as bar:
        tasks: dict[str, Any] = {}

        def step(phase: str, done: int, total: int) -> None:
            # Two bars: rows read and validated, rows sealed and written (one transaction).
            if phase not in tasks:
                tasks[phase] = bar.add_task(_PHASES.get(phase, phase), total=total or None)
            bar.update(tasks[phase], completed=done, total=total or None)

        try:
            report = import_file(
                store,
                file,
                owner=owner,
                actor=cli_actor(),
                fmt=fmt,
                progress=step,
                check=import_check(),
            )
        except ImportFailed as exc:
            bar.stop()
            table = Table(title=f"{exc.message}", show_lines=False)
            table.add_column("line", justify="right")
            table.add_column("reason")
            for line, reason in exc.rows:
                table.add_row(str(line), reason)
            err.print(table)
            raise typer.Exit(1) from None
    finish(store)
    console.print(f"Imported {report.imported} archives ({report.first} … {report.last})")
    for line, number, warning in report.warnings:
        err.print(f"[yellow]warning:[/] line {line} ({number}): {warning}", highlight=False)
    strangers = sorted(report.people - _usernames(store))
    if strangers:
        err.print(
            f"[yellow]warning:[/] not yet users of this vault: {', '.join(strangers[:20])}"
            f"{' …' if len(strangers) > 20 else ''}; nobody can work on their archives until "
            "they are added with `archive-vault user add`",
            highlight=False,
        )


@app.command()
def seed(
    customers: Annotated[int, typer.Option(min=1, max=1_000_000, help="How many archives.")] = 100,
    rng_seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 2026,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Add realistic synthetic zh_CN archives (Faker) to a demo vault."""

    store = open_store(data_dir)
    require_demo(store.vault, "seed")
    gen = SyntheticArchives(seed=rng_seed, schema=store.schema)
    with progress_bar(unit="archives") as bar:
        task = bar.add_task("seeding", total=customers)
        report = bulk_insert(
            store,
            gen.records(store.filing.prepare, customers),
            actor=cli_actor(),
            total=customers,
            source="seed",
            progress=lambda _p, done, _t: bar.update(task, completed=done),
        )
    finish(store)
    console.print(f"Seeded {report.imported} synthetic archives ({report.first} … {report.last})")


def _usernames(store: Any) -> set[str]:

    with Session(store.engine) as session:
        return set(session.exec(select(User.username)))


@keys_app.command("rotate")
def keys_rotate(
    level: Annotated[list[str] | None, typer.Option(help="Only this level (repeatable).")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Add a KEK version and rewrap every DEK under it; resumes an interrupted rotation."""

    store = open_store(data_dir)
    with progress_bar() as bar:
        tasks: dict[str, Any] = {}

        def step(lvl: str, done: int, total: int) -> None:
            if lvl not in tasks:
                tasks[lvl] = bar.add_task(f"rewrapping {lvl}", total=total)
            bar.update(tasks[lvl], completed=done)

        reports = rotate(store, actor=cli_actor(), levels=level, progress=step)
    finish(store)
    for r in reports:
        retired = f", retired v{', v'.join(map(str, r.retired))}" if r.retired else ""
        resumed = " (resumed)" if r.resumed else ""
        console.print(
            f"{r.level}: now v{r.target_version}{resumed}, rewrapped {r.rewrapped}{retired}"
        )


@keys_app.command("status")
def keys_status(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """KEK versions per level and how many archives each still wraps."""

    store = open_store(data_dir, changes=False)
    with Session(store.engine) as session:
        counts = kek_counts(session)
    table = Table(title="Key-encryption keys")
    for column in ("level", "version", "state", "archives"):
        table.add_column(column)
    holder = "token" if store.settings.key_provider == "pkcs11" else "key file"
    for lvl in LEVELS:
        known = store.keys.versions(lvl)
        held = counts.get(lvl, {})
        for version in sorted(set(known) | set(held)):
            meta = known.get(version)
            n = held.get(version, 0)
            if meta is None:
                state = f"[red]not in the {holder}[/]" if n else f"not in the {holder}"
            elif meta["retired_at"]:
                state = "[red]retired[/]" if n else "retired"
            else:
                state = "active" if meta["active"] else "old"
            table.add_row(lvl, f"v{version}", state, str(n))
    console.print(table)
    # Archives under a version the key file no longer holds cannot be opened (the same
    # rule `restore` applies before it restores anything).
    unreadable = sum(u.archives for u in unreadable_versions(store.keys, counts))
    if unreadable:
        # A database restored from before a rotation, served with the key file of after it.
        err.print(
            f"[red]error:[/] {unreadable} archive(s) are wrapped by a key version the key file "
            "no longer holds (retired or missing), so they cannot be read: this key file "
            "does not match this database. Restore the key file backed up with this "
            "database's backup (keep one with every rotation); nothing was changed"
        )
        raise typer.Exit(1)


@app.command("custodians")
def custodians(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    problems_only: Annotated[
        bool, typer.Option("--problems", help="Only the archives whose custodian breaks Art 22.")
    ] = False,
) -> None:
    """Secret and top-secret archives with their custodian, flagging those that break
    Art 22 (none, disabled, not an officer or the supervisor, the owner or a contact):
    useful after upgrading an older vault. Metadata only; changes nothing. Exits 1
    when any breaks the rule."""

    store = open_store(data_dir, changes=False)
    with Session(store.engine) as session:
        rows = [
            (a.archive_no, a.classification, a.owner, a.custodian or "", problem)
            for a, problem in custodian_review(session)
        ]
    table = Table(title="Custodians (Art 22)")
    for column in ("archive", "classification", "owner", "custodian", "problem"):
        table.add_column(column)
    broken = 0
    for no, level, owner, keeper, problem in rows:
        broken += problem is not None
        if problems_only and problem is None:
            continue
        table.add_row(no, level, owner, keeper or "-", problem or "")
    console.print(table)
    if broken:
        err.print(
            f"{broken} archive(s) break the custodian rule: name another with "
            "POST /customers/{no}/custodian (a request an officer files)"
        )
        raise typer.Exit(1)
    console.print(f"{len(rows)} archive(s) checked; every custodian keeps Art 22")
