"""The customer list's masked names: each archive's masked name (王**), sealed.

The customer list (客户一览表) lets a salesperson find a client without opening
archives one by one, and shows no protected content: only the schema's own
masked view of the ``name`` field ("masked views keep the surname"). That view
is computed where the name is in memory anyway (filing, a change of the name,
a re-seal) and stored sealed with AES-256-GCM under a key derived from the key
file for this one purpose, its associated data binding it to the archive
number: the database never holds it in clear (the masked name carries the
surname), and a blob copied onto another archive's row does not open. The
clear name stays in the archive's sealed group and nowhere else.

A list opens a page of these blobs in one pass (``open_many``); an archive
filed before this existed has none until ``archive-vault upgrade`` fills it
(``backfill``), reading the name group through the store's read primitive.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from audit.events import SYSTEM, Actor, AuditAction, AuditEvent, AuditSink
from foundation.db import transaction
from vault.crypto import InvalidCiphertext, Sealer, aad
from vault.errors import DecryptionFailed, KeyFileError
from vault.keys import KeyProvider
from vault.models import Archive, ArchiveStatus, table_of
from vault.reading import Reader
from vault.schema import ProfileSchema

NAME_FIELD = "name"
KEY_NAME = "customer-list:masked-name"
_AAD_LABEL = "customer-list/masked-name/1"
_A = table_of(Archive)
log = logging.getLogger(__name__)


class MaskedNames:
    """Sealing and opening the masked names of archives (the key is derived on first use)."""

    def __init__(self, keys: KeyProvider, schema: ProfileSchema) -> None:
        self._keys = keys
        self._spec = schema.fields.get(NAME_FIELD)
        self._sealer: Sealer | None = None

    @property
    def group(self) -> str | None:
        """The field group holding the name (None in a schema without one)."""
        return self._spec.group if self._spec is not None else None

    def _key(self) -> Sealer:
        if self._sealer is None:
            self._sealer = Sealer(self._keys.index_key(KEY_NAME), 1)
        return self._sealer

    def seal(self, archive_no: str, fields: Mapping[str, str] | None) -> bytes | None:
        """The sealed masked name of a name group's fields; None when they name nobody."""
        value = fields.get(NAME_FIELD) if fields else None
        if value is None or self._spec is None:
            return None
        masked = self._spec.masked(value)
        return self._key().seal(masked.encode(), aad(_AAD_LABEL, archive_no))

    def of_groups(self, archive_no: str, groups: Mapping[str, Mapping[str, str]]) -> bytes | None:
        """The sealed masked name of a whole archive's groups (filing)."""
        return self.seal(archive_no, groups.get(self.group, {}) if self.group else None)

    def of_many(
        self, archives: Sequence[tuple[str, Mapping[str, Mapping[str, str]]]]
    ) -> list[bytes | None]:
        """``of_groups`` of (archive number, groups) pairs, sealed in one pass (an import)."""
        group, spec = self.group, self._spec
        masked = [
            (no, groups.get(group, {}).get(NAME_FIELD) if group else None)
            for no, groups in archives
        ]
        todo = [
            (spec.masked(value).encode(), aad(_AAD_LABEL, no))
            for no, value in masked
            if value is not None and spec is not None
        ]
        sealed = iter(self._key().seal_many(todo) if todo else [])
        return [
            next(sealed) if value is not None and spec is not None else None
            for _no, value in masked
        ]

    def open_many(self, rows: Iterable[tuple[str, bytes | None]]) -> dict[str, str | None]:
        """The masked names of a page of archives, by number, in one pass.

        A blob that does not open (copied from another row, altered) shows as no
        name rather than failing the whole list; the archive number is logged so the
        tampering is seen, never the blob.
        """
        sealer: Sealer | None = None
        out: dict[str, str | None] = {}
        for archive_no, blob in rows:
            if blob is None:
                out[archive_no] = None
                continue
            sealer = sealer or self._key()
            try:
                out[archive_no] = sealer.open(blob, aad(_AAD_LABEL, archive_no)).decode()
            except (InvalidCiphertext, UnicodeDecodeError):
                log.warning("archive %s: its masked name does not open", archive_no)
                out[archive_no] = None
        return out


class _Store(Protocol):
    """What ``backfill`` uses of ``vault.store.ArchiveStore`` (which holds this module)."""

    engine: Engine
    reader: Reader
    audit: AuditSink
    masked_names: MaskedNames


def backfill(
    store: _Store,
    *,
    actor: Actor = SYSTEM,
    batch: int = 200,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int]:
    """Fill the masked name of every active archive that has none; (filled, failed).

    The migration that added the column cannot (it never sees the key file), so
    ``archive-vault upgrade`` runs this after sealing missing manifests. Each
    archive's name group is opened with ``Reader.decrypt`` (checked against its
    sealed manifest); the name stays in memory and only the sealed masked view is
    written. Batches commit one by one, each audited with the archives it opened,
    so an interrupted run resumes; archives without a name stay without one, and a
    rerun finds nothing new to fill (idempotent). An archive whose group does not
    open is counted as failed and left as it was. ``progress(done, total)``
    follows the scan.
    """
    group = store.masked_names.group
    if group is None:
        return 0, 0
    todo = (_A.c.masked_name_ct.is_(None), _A.c.status == ArchiveStatus.ACTIVE.value)
    with store.engine.connect() as conn:
        total = int(conn.execute(sa.select(sa.func.count()).where(*todo)).scalar_one())
    filled = failed = seen = 0
    last = 0
    while True:
        with transaction(store.engine) as session:
            conn = session.connection()
            rows = conn.execute(
                sa.select(_A).where(*todo, _A.c.id > last).order_by(_A.c.id).limit(batch)
            ).all()
            if not rows:
                return filled, failed
            opened: list[str] = []
            for row in rows:
                last = row.id
                try:
                    fields = store.reader.decrypt(session, row, [group]).get(group)
                except (DecryptionFailed, KeyFileError):
                    failed += 1
                    continue
                opened.append(row.archive_no)
                sealed = store.masked_names.seal(row.archive_no, fields)
                if sealed is not None:
                    conn.execute(
                        sa.update(_A).where(_A.c.id == row.id).values(masked_name_ct=sealed)
                    )
                    filled += 1
            store.audit.append(
                session,
                AuditEvent(
                    action=AuditAction.MASK_NAMES,
                    actor=actor,
                    archives=tuple(opened),
                    groups=(group,),
                    detail={"scanned": len(rows), "opened": len(opened)},
                ),
            )
        seen += len(rows)
        if progress is not None:
            progress(seen, total)
