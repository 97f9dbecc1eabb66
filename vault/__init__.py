"""The encrypted store of customer archives.

``vault`` owns the sealed content and everything needed to open it: opening a
vault (``vault.vault``: settings, database, key file, schema), the key provider
(``keys``), envelope keys (``envelope``), blind indexes (``index``), filing new
archives (``filing``), the primitives of an audited read (``reading``), changes,
lists and search (``archives``), consent, reclassification and destruction
(``lifecycle``), interactions and attachments (``business_records``, ``uploads``),
the sealed manifest of an archive's groups (``manifest``), import, rotation and
seed data. ``vault.store.ArchiveStore`` holds these collaborators. Who may do
what is decided above it, in ``policies``; every change and release of content
appends its entry to ``audit`` in the same transaction.
"""
