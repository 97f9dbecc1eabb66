"""The store: every way customer content goes in or out of the vault, as collaborators.

``ArchiveStore`` only holds them, each with one concern:

* ``envelope`` (``vault.envelope``) - KEKs, DEK wrapping, opening sealed groups;
* ``index`` (``vault.index``) - blind indexes and keyed query hashes;
* ``masked_names`` (``vault.masked_names``) - the customer list's sealed masked names;
* ``filing`` (``vault.filing``) - validating, numbering, sealing new archives;
* ``reader`` (``vault.reading``) - the primitives of a read, exports, history;
* ``archives`` (``vault.archives``) - changes, owner and contacts, lists, search;
* ``lifecycle`` (``vault.lifecycle``) - consent, reclassification, destruction;
* ``records`` (``vault.business_records``) - interactions and attachments.

Every operation that releases or changes content appends its audit event in
the same transaction; plaintext is returned only after that commit, so an
audit failure means no content (fail-closed).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.engine import Engine

from audit.events import AuditSink
from foundation.clock import utcnow
from foundation.settings import Settings
from vault.archives import Archives
from vault.business_records import BusinessRecords
from vault.envelope import Envelope
from vault.filing import Filing
from vault.index import BlindIndexes
from vault.keys import KeyProvider
from vault.lifecycle import Lifecycle
from vault.masked_names import MaskedNames
from vault.reading import Reader
from vault.schema import ProfileSchema
from vault.vault import Vault


class ArchiveStore:
    """The store's collaborators over one opened vault and one audit sink."""

    def __init__(
        self,
        vault: Vault,
        audit: AuditSink | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.vault = vault
        self.engine: Engine = vault.engine
        self.keys: KeyProvider = vault.keys
        self.schema: ProfileSchema = vault.schema
        self.settings: Settings = vault.settings
        self.audit: AuditSink = audit if audit is not None else vault.audit_log()
        self.clock = clock
        self.envelope = Envelope(vault.keys)
        self.index = BlindIndexes(vault.keys, vault.schema, vault.index_bits)
        self.masked_names = MaskedNames(vault.keys, vault.schema)
        self.reader = Reader(self.engine, self.envelope, self.schema, self.audit)
        self.filing = Filing(
            engine=self.engine,
            settings=self.settings,
            schema=self.schema,
            envelope=self.envelope,
            index=self.index,
            masked_names=self.masked_names,
            audit=self.audit,
            clock=clock,
        )
        self.archives = Archives(
            engine=self.engine,
            settings=self.settings,
            schema=self.schema,
            envelope=self.envelope,
            index=self.index,
            masked_names=self.masked_names,
            reader=self.reader,
            audit=self.audit,
            clock=clock,
        )
        self.lifecycle = Lifecycle(
            engine=self.engine,
            schema=self.schema,
            envelope=self.envelope,
            index=self.index,
            masked_names=self.masked_names,
            audit=self.audit,
            clock=clock,
        )
        self.records = BusinessRecords(
            engine=self.engine,
            settings=self.settings,
            envelope=self.envelope,
            audit=self.audit,
            clock=clock,
        )
