"""Opening a vault: settings + database + key file + schema, checked against each other.

``init_vault`` creates the keys (a key file, 0600, outside the database, or key
objects in a PKCS#11 token: ``vault.providers``) and the tables
and records the vault's identity in both, so that ``open_vault`` can refuse a
key file from another vault with a clear message instead of failing later with
a decryption error on the first read. Creating is all or nothing
(``creating_vault``, ``vault.creation``): a failure leaves no key file and no
half-made database, so a retry is not refused. Opening also gives a key file
from before audit MACs its audit MAC key (``ensure_audit_mac_key``). A database
that cannot be reached is said to be unreachable (``DatabaseUnreachable``),
never "no vault": the operator is sent to the database URL, not to ``init``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError
from sqlmodel import Session, select

from audit.locks import locked_head
from audit.log import AuditLog
from foundation.db import make_engine, transaction
from foundation.settings import Settings
from vault import migrate
from vault.creation import Footprint, missing_dirs, sqlite_file
from vault.errors import DatabaseUnreachable, KeyFileError, NotInitialised, RestoreIncomplete
from vault.keys import KeyProvider
from vault.models import VaultMeta
from vault.providers import check_can_create, create_keys, load_keys
from vault.schema import ProfileSchema, load_schema

# A ``vault_meta`` row set by ``archive-vault restore`` before the restored rows become
# visible and removed in the transaction of its closing audit entry: while it is there,
# the restored audit log may be older than a log already published, and no command or
# service opens the vault (``open_vault``), only the restore that finishes it.
RESTORE_MARKER = "restore_in_progress"


@dataclass
class Vault:
    settings: Settings
    engine: Engine
    keys: KeyProvider
    schema: ProfileSchema
    index_bits: int
    # Set when this open gave the key file its audit MAC key: the first seq it covers.
    audit_mac_added_from: int | None = None

    def audit_log(self) -> AuditLog:
        """The vault's audit log (the store's collaborators append to it by default)."""
        return AuditLog(engine=self.engine, keys=self.keys, settings=self.settings)


def ensure_audit_mac_key(engine: Engine, keys: KeyProvider) -> int | None:
    """Give a key file from before audit MACs its MAC key; the first seq covered, if added now.

    The head is read under the audit append lock and the key written before the
    lock is released, so every entry after the head is MACed: by this process,
    and by any process that loaded the key file earlier (it looks again under
    the same lock, see ``Keyring.audit_mac_key``). Entries up to the head are
    reported by ``audit verify`` as written before MACs, never as forged.
    """
    get = getattr(keys, "audit_mac_key", None)
    if get is None or get() is not None:
        return None
    try:
        with transaction(engine) as session:
            head = locked_head(session)
            key = keys.add_audit_mac_key(head + 1)
    except OSError as exc:
        raise KeyFileError(
            f"the key file has no audit MAC key and cannot be given one ({exc.strerror or exc}); "
            "run `archive-vault upgrade` as the key file's owner"
        ) from None
    return key.from_seq


def index_bits_for(expected: int, min_candidates: int) -> int:
    """CipherSweet sizing: with N archives, 2**bits buckets leave >= min_candidates each."""
    return max(8, min(32, math.floor(math.log2(max(expected // min_candidates, 2)))))


def describe(engine: Engine) -> str:
    """The database as the operator configured it, without its password."""
    return engine.url.render_as_string(hide_password=True)


def connect(engine: Engine) -> Connection:
    """A connection, or ``DatabaseUnreachable`` naming the database and the driver's reason.

    The reason is the first line of the driver's connect error (refused, unknown host,
    authentication failed): it carries no SQL and no values, only where and why.
    """
    try:
        return engine.connect()
    except DBAPIError as exc:
        lines = str(exc.orig).strip().splitlines() or [type(exc.orig).__name__]
        reason = " ".join(lines[0].split())[:200]
        raise DatabaseUnreachable(
            f"cannot reach the database {describe(engine)}: {reason}. Check "
            "VAULT_DATABASE_URL (host, port, database, user) and that the server is running"
        ) from None


def _read_meta(engine: Engine) -> dict[str, str]:
    db_file = sqlite_file(engine)
    if db_file is not None and not db_file.exists():
        return {}  # nothing there: and opening it would create an empty file
    with connect(engine) as conn:
        try:
            return {m.key: m.value for m in Session(bind=conn).exec(select(VaultMeta))}
        except (OperationalError, ProgrammingError):  # no vault tables in this database
            return {}


def init_vault(settings: Settings, *, engine: Engine | None = None) -> Vault:
    """Create keys and tables for a new vault; refuses to touch an existing one."""
    with creating_vault(settings, engine=engine) as vault:
        return vault


@contextmanager
def creating_vault(settings: Settings, *, engine: Engine | None = None) -> Iterator[Vault]:
    """Create a vault and run the caller's first steps in it (``init``'s audit entry), all or
    nothing: if anything fails, here or in the caller's block, what the creation made is
    removed again (``vault.creation.Footprint``) and the error propagates.

    Everything that can be refused without writing is checked first: the schema file, the
    database (reachable, holding no vault) and the key file (absent).
    """
    engine = engine or make_engine(settings.resolved_database_url)
    schema = load_schema(settings.schema_file)
    if _read_meta(engine).get("vault_id"):
        raise NotInitialised(
            f"a vault already exists at {describe(engine)}; refusing to re-initialise"
        )
    check_can_create(settings)
    footprint = Footprint(engine=engine)
    try:
        vault = _create(settings, engine, schema, footprint)
        yield vault
    except BaseException:
        footprint.undo()
        raise


def _create(
    settings: Settings, engine: Engine, schema: ProfileSchema, footprint: Footprint
) -> Vault:
    made = set(missing_dirs(settings.data_dir))
    if settings.key_provider == "file":
        made |= set(missing_dirs(settings.resolved_key_file.parent))
    footprint.dirs = sorted(made, key=lambda d: len(d.parts), reverse=True)  # deepest first
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db_file = sqlite_file(engine)
    if db_file is not None and not db_file.exists():
        # Created 0600 before SQLite opens it; SQLite gives the WAL the same mode.
        os.close(os.open(db_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        footprint.database_file = db_file
    connect(engine).close()

    def made_file(path: Path) -> None:
        footprint.key_file = path

    def made_token_keys(remove: Callable[[], list[str]]) -> None:
        footprint.token_keys = remove

    keys = create_keys(settings, made_file=made_file, made_token_keys=made_token_keys)
    # Only from here on are the schema's new tables this creation's: a creation refused
    # above (another one's key file appeared meanwhile) drops nothing.
    footprint.take_snapshot()
    migrate.upgrade(engine)
    migrate.secure(engine, settings.app_role)
    bits = index_bits_for(settings.expected_archives, settings.index_min_candidates)
    with Session(engine) as s:
        for key, value in {
            "vault_id": keys.vault_id,
            "index_bits": str(bits),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }.items():
            s.add(VaultMeta(key=key, value=value))
        s.commit()
    return Vault(settings=settings, engine=engine, keys=keys, schema=schema, index_bits=bits)


def open_vault(
    settings: Settings, *, engine: Engine | None = None, restoring: bool = False
) -> Vault:
    """The configured vault, checked; ``restoring`` only for the restore that finishes one."""
    engine = engine or make_engine(settings.resolved_database_url)
    meta = _read_meta(engine)
    if not meta.get("vault_id"):
        raise NotInitialised(f"no vault at {describe(engine)}; run `archive-vault init` first")
    if meta.get(RESTORE_MARKER) and not restoring:
        raise RestoreIncomplete(
            f"the database {describe(engine)} is a restore that did not finish (started "
            f"{meta[RESTORE_MARKER]}): its audit log may be older than the one already "
            "published. Run `archive-vault restore BACKUP --bundle NEWEST_BUNDLE --force` "
            "again; until then the vault does not start"
        )
    migrate.check(engine)
    keys = load_keys(settings, meta["vault_id"])
    schema = load_schema(settings.schema_file)
    added = ensure_audit_mac_key(engine, keys)
    return Vault(
        settings=settings,
        engine=engine,
        keys=keys,
        schema=schema,
        index_bits=int(meta.get("index_bits", "16")),
        audit_mac_added_from=added,
    )
