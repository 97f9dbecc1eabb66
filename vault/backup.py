"""A backup of the vault: its database, a verified audit bundle and a manifest, in one directory.

Layout (format ``archive-vault-backup/1``), a directory of mode 0700 whose files
are 0600, written under ``NAME.partial`` and renamed into place only when
complete, so a half-written backup never looks like one:

``manifest.json``
    vault id, time, database kind and schema revision, the audit log's signed
    size and root as of the backup, the KEK versions the archives were wrapped
    under, and the SHA-256 of the two other files.
``database.sqlite3`` or ``database.pgdump``
    SQLite's online backup of the live file, or ``pg_dump``'s custom format of
    the vault's schema (``foundation.dbcopy``).
``audit-bundle.json``
    ``audit export``'s bundle, taken just before the database (which therefore
    extends it) and verified with the vault's key before the backup is kept.

Never the key file. Keys are backed up apart from the database: a stolen backup
is then ciphertext, and a stolen key file holds no archive.

Every ``audit export`` and backup also notes the newest checkpoint it exported
in ``<data-dir>/audit-last-export.json`` (a signed note and where the bundle
went; nothing secret), so that ``restore`` knows when a newer log has been
published than the backup holds and can refuse to start the vault without it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session

from audit.checkpoint import CheckpointError, SignedCheckpoint, open_checkpoint
from audit.log import AuditLog
from audit.restore import BundleRefused, VerifiedBundle, verified_bundle
from foundation.dbcopy import create_private, pg_dump, sqlite_backup
from foundation.settings import Settings
from vault import migrate
from vault.creation import sqlite_file
from vault.errors import VaultError
from vault.key_health import unreadable_versions
from vault.keys import KeyProvider
from vault.rotation import kek_counts
from vault.vault import Vault

BACKUP_FORMAT = "archive-vault-backup/1"
MANIFEST = "manifest.json"
BUNDLE = "audit-bundle.json"
DATABASE = {"sqlite": "database.sqlite3", "postgresql": "database.pgdump"}
LAST_EXPORT = "audit-last-export.json"
_LAST_EXPORT_FORMAT = "archive-vault-last-export/1"

Progress = Callable[[str, int, int], None]


class BackupError(VaultError):
    code = "backup"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_bundle(log: AuditLog, out: Path) -> dict[str, int]:
    """``audit export``'s bundle into a new private file (a partial file renamed at the end)."""
    tmp = out.with_name(out.name + ".partial")
    tmp.unlink(missing_ok=True)
    create_private(tmp)
    with tmp.open("w", encoding="utf-8") as fh:
        counts = log.export_bundle(fh)
    tmp.replace(out)
    return counts


def load_bundle(path: Path, log: AuditLog, what: str) -> VerifiedBundle:
    """A bundle file verified with the vault's own key (never the key inside the bundle)."""
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise BundleRefused(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError):
        raise BundleRefused(f"{what} {path} is not an audit bundle (not JSON)") from None
    return verified_bundle(data, public_key=log.public_key, origin=log.origin, what=what)


def in_use(keys: KeyProvider, counts: Mapping[str, Mapping[int, int]]) -> list[str]:
    return [str(u) for u in unreadable_versions(keys, counts)]


def key_mismatch_message(problems: list[str]) -> str:
    return (
        "the key file cannot open this backup's archives: "
        + "; ".join(problems)
        + ". A rotation after the backup retired the keys it needs. Point VAULT_KEY_FILE at "
        "the key file copy made with this backup (after the rotation before it) and run "
        "the restore again"
    )


@dataclass(frozen=True)
class Written:
    path: Path
    manifest: dict[str, Any]


def write_backup(vault: Vault, log: AuditLog, out: Path, progress: Progress) -> Written:
    """Bundle, database and manifest into the directory ``out`` (which must not exist)."""
    if out.exists() or out.is_symlink():
        raise BackupError(f"{out} already exists; a backup never overwrites anything")
    kind = vault.engine.dialect.name
    if kind not in DATABASE:
        raise BackupError(f"cannot back up a {kind} database")
    work = out.with_name(out.name + ".partial")
    if work.exists():
        raise BackupError(
            f"{work} exists: an earlier backup stopped half-way; remove it and run again"
        )
    work.mkdir(mode=0o700)
    try:
        log.checkpoint_if_new()  # so the bundle's tail is covered by a signature
        write_bundle(log, work / BUNDLE)
        bundle = load_bundle(work / BUNDLE, log, "the backup's audit bundle")
        signed = bundle.signed
        if signed is None:
            raise BackupError("the audit log has no signed checkpoint to back up")
        with Session(vault.engine) as session:
            counts = kek_counts(session)
        db_out = work / DATABASE[kind]
        pg_schema = None
        if kind == "sqlite":
            source = sqlite_file(vault.engine)
            if source is None:
                raise BackupError("an in-memory SQLite database cannot be backed up")
            sqlite_backup(source, db_out, lambda done, total: progress("database", done, total))
        else:
            with vault.engine.connect() as conn:
                pg_schema = str(conn.exec_driver_sql("SELECT current_schema()").scalar_one())
            progress("database (pg_dump)", 0, 1)
            pg_dump(vault.engine.url, pg_schema, db_out)
            progress("database (pg_dump)", 1, 1)
        manifest = {
            "format": BACKUP_FORMAT,
            "vault_id": vault.keys.vault_id,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "database": {
                "kind": kind,
                "file": db_out.name,
                "sha256": sha256_file(db_out),
                "schema_revision": migrate.current(vault.engine),
                "pg_schema": pg_schema,
            },
            "audit": {
                "origin": log.origin,
                "size": signed.size,
                "root": signed.root_b64,
                "checkpoint": signed.note,
                "bundle": BUNDLE,
                "bundle_sha256": sha256_file(work / BUNDLE),
            },
            "kek_versions": {
                level: {str(v): n for v, n in sorted(per.items())} for level, per in counts.items()
            },
        }
        manifest["mac"] = manifest_mac(vault.keys, manifest)
        create_private(work / MANIFEST)
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return Written(out, manifest)


def manifest_mac(keys: KeyProvider, manifest: Mapping[str, Any]) -> str:
    """HMAC-SHA256 of the manifest (every field but ``mac``) under a key of this vault's.

    The digests in the manifest catch damage; this catches forgery: a backup
    directory made or edited by someone without the vault's keys (an extra
    administrator row, a revoked grant put back, a dump carrying its own SQL, a
    trigger that erases the restore mark) is refused before anything is
    restored.
    """
    body = {k: v for k, v in manifest.items() if k != "mac"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    key = keys.index_key(_MANIFEST_KEY)
    return hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).hexdigest()


def check_manifest_mac(keys: KeyProvider, manifest: Mapping[str, Any]) -> None:
    given = manifest.get("mac")
    if not isinstance(given, str) or not hmac.compare_digest(
        given.encode(), manifest_mac(keys, manifest).encode()
    ):
        raise BackupError(
            "the backup's manifest does not carry this vault's seal: it was made without this "
            "vault's keys, or altered since; nothing was changed"
        )


def read_manifest(backup: Path) -> dict[str, Any]:
    """The manifest of a backup directory, its files checked against their digests."""
    try:
        manifest = json.loads((backup / MANIFEST).read_bytes())
    except OSError as exc:
        raise BackupError(
            f"{backup} is not a vault backup (no readable {MANIFEST}: {exc.strerror or exc})"
        ) from None
    except (ValueError, UnicodeDecodeError):
        raise BackupError(f"{backup}/{MANIFEST} is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BACKUP_FORMAT:
        raise BackupError(f"{backup} is not a backup of format {BACKUP_FORMAT}")
    try:
        db, audit = manifest["database"], manifest["audit"]
        checks = ((db["file"], db["sha256"]), (audit["bundle"], audit["bundle_sha256"]))
    except (KeyError, TypeError):
        raise BackupError(f"{backup}/{MANIFEST} lacks a field it must have") from None
    for name, digest in checks:
        path = backup / str(name)
        if Path(str(name)).name != name or not path.is_file():
            raise BackupError(f"{backup} lacks its file {name!r}")
        if sha256_file(path) != digest:
            raise BackupError(f"{path} does not match the manifest's digest (damaged or altered)")
    return manifest


_MANIFEST_KEY = "backup-manifest"


def record_export(
    settings: Settings, bundle_path: Path, signed: SignedCheckpoint | None, log: AuditLog
) -> None:
    """Note the newest checkpoint exported (``restore`` compares a backup with it).

    A record already there is kept only when its note opens with the log's key and
    is newer: an edited record (a size made up to stop later records) is replaced.
    """
    if signed is None:
        return
    record = {
        "format": _LAST_EXPORT_FORMAT,
        "path": str(bundle_path.resolve()),
        "size": signed.size,
        "note": signed.note,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = settings.data_dir / LAST_EXPORT
    try:
        old = last_export(settings, log)
    except BackupError:
        old = None  # not a record this log signed: replaced by a true one
    if old is not None and old.size > signed.size:
        return  # an older log exported (a bundle of a restored backup): keep the newest
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    create_private(tmp)
    tmp.write_text(json.dumps(record, indent=2) + "\n", "utf-8")
    tmp.replace(path)


@dataclass(frozen=True)
class LastExport:
    path: str
    size: int
    checkpoint: SignedCheckpoint | None  # None when no key was given to open it


def last_export(settings: Settings, log: AuditLog) -> LastExport | None:
    """The newest exported checkpoint this data directory knows of, its note checked with
    the log's key; None only when there is no record. A record that is there but does
    not open is refused (``BackupError``), never taken as "nothing exported": deleting
    or editing it must not be a way to restore an older log than the published one."""
    where = settings.data_dir / LAST_EXPORT
    try:
        raw = where.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BackupError(f"{where} cannot be read ({exc.strerror or exc})") from None
    try:
        record = json.loads(raw)
        path, note = str(record["path"]), str(record["note"])
        cp = open_checkpoint(note, log.public_key, log.origin)
    except (ValueError, KeyError, TypeError, CheckpointError):
        raise BackupError(
            f"{where} is not a record this vault's log signed (edited?): find the newest "
            "exported audit bundle and pass it with --bundle"
        ) from None
    return LastExport(path, cp.size, cp)
