"""``archive-vault backup`` and ``archive-vault restore``.

A backup is a directory (``vault.backup``): the database copied online, the
audit log's verified bundle and a manifest; never the key file. A restore puts
the database back marked "restore in progress" (``vault.restore``), checks it
against the key file and its own log, brings back from a newer bundle the audit
entries the backup lacks (without a fork: ``audit.restore``), destroys again
what that newer log destroyed, and only then, in the transaction of its own
audit entry, removes the mark that keeps the vault from starting.

Everything that can be refused is refused before the target database is
touched: a damaged backup, another vault's key file, a bundle that does not
verify or forks, a newer published log not given, retired keys, a non-empty
target without ``--force``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from audit.checkpoint import SignedCheckpoint
from audit.errors import AuditError
from audit.events import Actor, AuditAction, AuditEvent
from audit.log import AuditLog
from audit.restore import BroughtBack, BundleRefused, VerifiedBundle, bring_back, check_extends
from cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    cli_actor,
    console,
    err,
    finish,
    open_store,
    progress_bar,
    settings_for,
)
from cli.operator import confirm_by_supervisor, establish, establish_if_named
from foundation.clock import utcnow
from foundation.db import make_engine, transaction
from foundation.dbcopy import DatabaseCopyError
from foundation.settings import Settings
from vault.backup import (
    BUNDLE,
    BackupError,
    check_manifest_mac,
    in_use,
    key_mismatch_message,
    last_export,
    load_bundle,
    read_manifest,
    record_export,
    write_backup,
)
from vault.errors import KeyFileError, NotInitialised, VaultError
from vault.keys import KeyProvider
from vault.providers import load_keys
from vault.restore import (
    Reapplied,
    check_target,
    clear_marker,
    reapply_destructions,
    restore_database,
    revoke_every_session,
)
from vault.rotation import kek_counts
from vault.store import ArchiveStore
from vault.vault import open_vault


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


class _Bars:
    """One Rich task per named step, created when the step first reports."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.tasks: dict[str, Any] = {}

    def __call__(self, what: str, done: int, total: int) -> None:
        if what not in self.tasks:
            self.tasks[what] = self.bar.add_task(what, total=total)
        self.bar.update(self.tasks[what], completed=done, total=total)


def backup(
    out: Annotated[
        Path, typer.Option("--out", help="Backup directory to create (must not exist).")
    ],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Back up the database (online) with a verified audit bundle; never the key file."""

    store = open_store(data_dir)
    log = store.audit
    if not isinstance(log, AuditLog):  # pragma: no cover - the vault always builds one
        raise _fail("this vault has no audit log")
    try:
        with progress_bar() as bar:
            written = write_backup(store.vault, log, out, _Bars(bar))
    except DatabaseCopyError as exc:
        raise _fail(str(exc)) from None
    audit = written.manifest["audit"]
    record_export(store.settings, out / BUNDLE, log.latest_checkpoint(), log)
    with transaction(store.engine) as session:
        store.audit.append(
            session,
            AuditEvent(
                action=AuditAction.BACKUP,
                actor=cli_actor(),
                detail={
                    "backup": out.name[:200],
                    "database": written.manifest["database"]["kind"],
                    "audit_size": audit["size"],
                    "database_sha256": written.manifest["database"]["sha256"],
                },
            ),
        )
    finish(store)
    console.print(
        f"wrote backup {out} (mode 0700): database, audit bundle of {audit['size']} entries, "
        "manifest. The key file is not in it: copy it apart after every `keys rotate`",
        highlight=False,
    )


def restore(
    backup_dir: Annotated[Path, typer.Argument(help="A directory written by `backup`.")],
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle",
            help="A newer audit bundle (`audit export` after the backup): its entries and "
            "destructions are brought back.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Delete what the target database holds first.")
    ] = False,
    confirm_by: Annotated[
        str | None,
        typer.Option(
            "--confirm-by",
            help="The information supervisor of the vault being replaced, who confirms at "
            "this terminal (VAULT_CONFIRMER_PASSWORD_FILE for a script); needed to restore "
            "over a vault that has administrators.",
        ),
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Restore a backup into the configured (empty) database, with the current key file.

    Everyone signs in again afterwards: no token or web session issued before the
    restore is accepted.
    """

    settings = settings_for(data_dir)
    try:
        _restore(settings, backup_dir, bundle, force, confirm_by)
    except DatabaseCopyError as exc:
        raise _fail(str(exc)) from None


def _restore(
    settings: Settings, backup_dir: Path, bundle: Path | None, force: bool, confirm_by: str | None
) -> None:
    manifest = read_manifest(backup_dir)
    try:
        keys = load_keys(settings, str(manifest.get("vault_id")))
    except KeyFileError as exc:
        raise _fail(f"{exc}; set VAULT_KEY_FILE to this vault's key file") from None
    check_manifest_mac(keys, manifest)
    engine = make_engine(settings.resolved_database_url)
    log = AuditLog(engine=engine, keys=keys, settings=settings)
    base = load_bundle(backup_dir / BUNDLE, log, "the backup's audit bundle")
    size, root = int(manifest["audit"]["size"]), str(manifest["audit"]["root"])
    if base.signed is None or base.size != size or base.signed.root_b64 != root:
        raise _fail("the backup's audit bundle does not match its manifest")
    newer = _newer(log, bundle, base)
    _require_newest(settings, log, base, newer)
    problems = _unreadable(keys, manifest["kek_versions"])
    if problems:
        raise _fail(key_mismatch_message(problems) + "; nothing was changed")
    replaced = _replaced_vault(settings, engine, confirm_by)
    check_target(engine, manifest, force=force)
    if replaced.signed is not None:
        _require_covers(replaced.signed, newer or base)

    # From here on the target changes; it stays marked until the last step.
    try:
        with progress_bar() as bar:
            store, brought, reapplied = _bring_up_to_date(
                settings, engine, manifest, backup_dir, newer, force, keys, _Bars(bar)
            )
    except (VaultError, AuditError, DatabaseCopyError) as exc:
        raise _fail(f"{exc}{_STILL_MARKED}") from None
    except DBAPIError as exc:
        raise _fail(
            f"the database refused the operation ({type(exc.orig).__name__}){_STILL_MARKED}"
        ) from None
    with transaction(store.engine) as session:
        store.audit.append(
            session,
            AuditEvent(
                action=AuditAction.RESTORE,
                actor=cli_actor(),
                detail={
                    "backup_created_at": str(manifest.get("created_at")),
                    "backup_audit_size": size,
                    "bundle_size": newer.size if newer else None,
                    "entries_brought_back": brought.added if brought else 0,
                    "destructions_reapplied": len(reapplied.done) if reapplied else 0,
                    "confirmed_by": replaced.confirmer.username if replaced.confirmer else None,
                },
            ),
        )
        revoke_every_session(session.connection(), utcnow())
        clear_marker(session.connection())
    finish(store)
    console.print(f"restored {backup_dir} ({manifest.get('created_at')})", highlight=False)
    console.print("  every user signs in again: earlier tokens and sessions are void")
    if brought is not None:
        console.print(
            f"  audit: {brought.before} entries from the backup, {brought.added} brought back "
            f"from the bundle, {brought.checkpoints} signed checkpoints",
            highlight=False,
        )
    if reapplied is not None:
        console.print(
            f"  re-destroyed {len(reapplied.done)} archive(s); {reapplied.already} already "
            f"destroyed; {reapplied.missing} not in this database",
            highlight=False,
        )


def _bring_up_to_date(
    settings: Settings,
    engine: Engine,
    manifest: dict[str, Any],
    backup_dir: Path,
    newer: VerifiedBundle | None,
    force: bool,
    keys: KeyProvider,
    bars: _Bars,
) -> tuple[ArchiveStore, BroughtBack | None, Reapplied | None]:
    """Database back, checked against the key file and its own log, the newer log put back,
    its destructions applied again: everything but the closing entry, under the mark."""
    restore_database(
        engine,
        manifest,
        backup_dir,
        settings.data_dir,
        force=force,
        progress=bars,
        app_role=settings.app_role,
    )
    vault = open_vault(settings, engine=engine, restoring=True)
    log = vault.audit_log()
    store = ArchiveStore(vault, audit=log)
    with Session(vault.engine) as session:
        problems = _unreadable(keys, kek_counts(session))
    if problems:
        raise BackupError(key_mismatch_message(problems))
    report = log.verify(lambda d, t: bars("verifying the restored audit log", d, t))
    # Entries a PostgreSQL backup caught queued have waited since: that alone is no fault.
    found = [p for p in report.all_problems() if p.kind != "stalled"]
    if found:
        raise BackupError(f"the restored audit log does not verify: {found[0]}")
    size = int(manifest["audit"]["size"])
    brought, reapplied = None, None
    if newer is not None and newer.size > size:
        brought = bring_back(
            vault.engine, newer, log.entry_mac(), lambda d, t: bars("audit entries", d, t)
        )
    log.integrate()
    # Only now may anything be appended (a sign-in is an entry): the published entries
    # are back in their places. The administrators are the restored database's.
    actor = establish_if_named(store)
    if newer is not None:
        reapplied = reapply_destructions(store, newer.entries[: newer.size], actor)
    return store, brought, reapplied


_STILL_MARKED = (
    ". The database stays marked as a restore in progress and the vault does not start; "
    "fix the cause and run the restore again with --force"
)


def _newer(log: AuditLog, bundle: Path | None, base: VerifiedBundle) -> VerifiedBundle | None:
    """The given bundle, verified with the key file's key and proven to extend the backup."""
    if bundle is None:
        return None
    newer = load_bundle(bundle, log, "the bundle")
    if newer.size < base.size:
        raise BundleRefused(
            f"the bundle signs {newer.size} entries, fewer than the backup's {base.size}: "
            "give a bundle exported after the backup"
        )
    assert base.signed is not None
    check_extends(base.size, base.signed.root, newer, what="the backup's audit log")
    return newer


@dataclass
class _Replaced:
    """What a restore must know of the vault it replaces, read before anything changes."""

    signed: SignedCheckpoint | None = None  # its log's newest signed checkpoint
    confirmer: Actor | None = None  # the information supervisor who confirmed


def _replaced_vault(settings: Settings, engine: Engine, confirm_by: str | None) -> _Replaced:
    """A restore over a vault that exists runs as one of its administrators (``--as``),
    confirmed by its information supervisor (``--confirm-by``, ``confirm_by_supervisor``).

    Restoring an older backup puts back users, roles and grants the vault has since
    disabled or revoked: one person alone must not do that, neither as a bare
    operating-system account nor as one administrator. Checked against the database
    being replaced, before anything changes. An empty target (a new machine) has no
    administrators to ask for; nor has a vault too damaged to open, which is what
    restores are for (its database access alone already lets one change any row).
    """
    try:
        vault = open_vault(settings, engine=engine, restoring=True)
    except NotInitialised:
        return _Replaced()
    except KeyFileError:
        raise _fail(
            "the target database holds a vault the key file does not open (another vault?); "
            "nothing was changed"
        ) from None
    try:  # read before the operator's sign-in appends to it
        signed = vault.audit_log().latest_checkpoint()
    except (AuditError, DBAPIError):
        signed = None
    store = ArchiveStore(vault)
    first = establish(store)
    confirmer = confirm_by_supervisor(store, first, confirm_by)
    return _Replaced(signed=signed, confirmer=confirmer)


def _require_covers(replaced: SignedCheckpoint, have: VerifiedBundle) -> None:
    """Refuse a restore that would drop history the replaced vault's own log signed.

    The last-export record only knows what was exported: an administrator who
    backed up, then disabled a user, revoked a grant or destroyed an archive, and
    restored that backup with ``--force`` over the live vault, would undo those acts
    and erase their entries, alone. The replaced vault's newest signed checkpoint
    must therefore be a prefix of what the restore brings back (``audit export``
    it first and pass it with ``--bundle``): its entries stay and its destructions
    are applied again.
    """
    if replaced.size > have.size:
        raise _fail(
            f"the vault being replaced has signed {replaced.size} audit entries, more than "
            f"this restore would bring back ({have.size}): restoring would erase them and "
            "undo what they record. Export its log first (`archive-vault audit export`) and "
            "pass it with --bundle; nothing was changed"
        )
    check_extends(replaced.size, replaced.root, have, what="the replaced vault's audit log")


def _require_newest(
    settings: Settings, log: AuditLog, base: VerifiedBundle, newer: VerifiedBundle | None
) -> None:
    """Refuse to restore a log older than, or forked from, the newest one exported here."""
    last = last_export(settings, log)
    if last is None or last.checkpoint is None:
        return
    have = newer or base
    if last.size > have.size:
        raise _fail(
            f"a newer audit log was exported ({last.size} entries, {last.path}) than this "
            f"restore would bring back ({have.size}): the restored vault would fork the "
            f"published log. Pass it: --bundle {last.path}; nothing was changed"
        )
    what = f"the vault's last exported log ({last.path})"
    check_extends(last.size, last.checkpoint.root, have, what=what)


def _unreadable(keys: KeyProvider, counts: Mapping[str, Mapping[Any, Any]]) -> list[str]:
    """KEK versions wrapping archives that the key file no longer (or never) held."""
    return in_use(
        keys, {lvl: {int(v): int(n) for v, n in per.items()} for lvl, per in counts.items()}
    )


def register(app: typer.Typer) -> None:
    app.command()(backup)
    app.command()(restore)
