"""The append-only, tamper-evident audit log.

Owns what an entry says (``events``, ``codec``), its tables and their database
guards (``models``, ``guards``), appending in the caller's transaction
(``appender``, ``locks``), the hash chain and Merkle tree (``chain``,
``merkle``), entry MACs (``mac``), signed checkpoints and when to sign them
(``checkpoint``, ``signer``, ``cadence``), queries and proofs (``queries``),
verification of the database (``verify_db``), bundles (``bundle``) and the
offline verifier (``verify``, which with ``merkle`` and ``checkpoint`` needs
only the standard library and ``cryptography``). ``log.AuditLog`` puts the
parts together. Below it is only ``foundation``.
"""
