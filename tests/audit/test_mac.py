"""What write access to the database alone cannot do to the audit log any more.

The attacker here can write the tables (the triggers dropped, as the file's
owner on SQLite or the tables' owner on PostgreSQL, or just INSERT as the
application's role) but holds neither the key file's audit MAC key nor the
signing key: recomputing every hash is no longer enough, and checkpoint rows
they add are verified, reported and skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from io import StringIO
from typing import Any

import pytest
import sqlalchemy as sa

from audit.codec import canonical_for_columns, format_time
from audit.errors import AuditIntegrityError
from audit.guards import DEFAULT_APP_ROLE
from audit.locks import locked_head
from audit.log import AuditLog
from audit.merkle import leaf_hash
from audit.stored import as_stored
from audit.verify import verify_bundle
from vault.keys import load_key_file, write_key_file
from vault.vault import Vault, open_vault

from .conftest import _unguarded, append_n

_COLUMNS = (
    "seq, time, actor, actor_role, action, outcome, archives, groups, grant_id, purpose, "
    "reason, client, detail, prev_hash, entry_hash, mac"
)
_INSERT_ENTRY = (
    f"INSERT INTO audit_entry ({_COLUMNS}) VALUES (:seq, :time, :actor, :actor_role, :action, "
    ":outcome, :archives, :groups, :grant_id, :purpose, :reason, :client, :detail, :prev_hash, "
    ":entry_hash, :mac)"
)


def _rows(engine: sa.Engine, first: int) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(
                sa.text(f"SELECT {_COLUMNS} FROM audit_entry WHERE seq >= :s ORDER BY seq"),
                {"s": first},
            ).mappings()
        ]


def _problems(log: AuditLog) -> list[tuple[str, int | None]]:
    report = log.verify()
    return [(p.kind, p.seq) for p in report.all_problems()]


@contextmanager
def app_role(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction as the application's login role (PostgreSQL), or plain (SQLite).

    On both, INSERT into the audit tables is allowed: it is how the service appends.
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SET LOCAL ROLE {DEFAULT_APP_ROLE}")
        yield conn


def rewrite_and_rehash(engine: sa.Engine, seq: int, **changes: Any) -> None:
    """Edit entry ``seq`` and recompute every hash after it, as the attack run did."""
    rows = _rows(engine, seq - 1)
    prev = rows[0]["entry_hash"]
    with _unguarded(engine) as conn:
        for row in rows[1:]:
            if row["seq"] == seq:
                row.update(changes)
            row["prev_hash"] = prev
            row["entry_hash"] = prev = leaf_hash(canonical_for_columns(row))
            conn.execute(
                sa.text(
                    "UPDATE audit_entry SET actor = :actor, purpose = :purpose, "
                    "prev_hash = :prev_hash, entry_hash = :entry_hash WHERE seq = :seq"
                ),
                row,
            )


def forge_next_entry(engine: sa.Engine, **changes: Any) -> int:
    """INSERT a correctly hashed, correctly linked "read" by a user who does not exist."""
    with app_role(engine) as conn:
        locked_head(conn)  # the append lock, taken as the service takes it
        head = (
            conn.execute(sa.text(f"SELECT {_COLUMNS} FROM audit_entry ORDER BY seq DESC LIMIT 1"))
            .mappings()
            .one()
        )
        row = dict(head)
        row.update(
            seq=head["seq"] + 1,
            actor="ghost.user",
            actor_role="salesperson",
            action="archive:read",
            outcome="allowed",
            archives=json.dumps(["KH-2025-000001"]),
            prev_hash=head["entry_hash"],
            mac=None,
        )
        row["time"] = format_time(datetime.now(UTC))
        row.update(changes)
        row["entry_hash"] = leaf_hash(canonical_for_columns(row))
        row["time"], row["action"], row["outcome"] = as_stored(
            row["time"], row["action"], row["outcome"]
        )
        conn.execute(sa.text(_INSERT_ENTRY), row)
    return int(row["seq"])


def insert_junk_checkpoints(
    engine: sa.Engine, sizes: list[int], copy_of: str | None = None
) -> None:
    with app_role(engine) as conn:
        for i, size in enumerate(sizes):
            note = copy_of if copy_of is not None else f"junk\n{size}\nAAAA\n\n— junk {i}\n"
            conn.execute(
                sa.text(
                    "INSERT INTO audit_checkpoint (note_hash, tree_size, root_hash, signed_at, "
                    "note, frontier) VALUES (:h, :size, :root, :at, :note, '[]')"
                ),
                {
                    "h": bytes([i + 1]) * 32,
                    "size": size,
                    "root": bytes(32),
                    "at": "2026-01-01T00:00:00.000000Z",
                    "note": note,
                },
            )


# -- item: the unsigned tail cannot be rewritten ------------------------------------


def test_an_edit_with_the_chain_rehashed_in_the_unsigned_tail_is_named(
    filled: AuditLog,
) -> None:
    append_n(filled, 10, start=20)  # 21..30, after the newest checkpoint (20)
    rewrite_and_rehash(filled.engine, 25, actor="mallory")
    assert _problems(filled) == [("forged", 25), ("forged", 26), ("forged", 27), ("forged", 28),
                                 ("forged", 29), ("forged", 30)]  # fmt: skip
    assert filled.verify().problem.seq == 25
    with pytest.raises(AuditIntegrityError, match="entry 25 carries no valid MAC") as info:
        filled.checkpoint()  # never signs the forgery
    assert info.value.seq == 25


def test_an_entry_moved_to_another_place_fails_its_mac(filled: AuditLog) -> None:
    """Same content, another seq, hashes recomputed: the MAC binds the place."""
    append_n(filled, 4, start=20)
    rows = _rows(filled.engine, 23)
    with _unguarded(filled.engine) as conn:
        conn.execute(sa.text("DELETE FROM audit_entry WHERE seq >= 23"))
        moved = dict(rows[1], seq=23, prev_hash=rows[0]["prev_hash"])
        moved["entry_hash"] = leaf_hash(canonical_for_columns(moved))
        conn.execute(sa.text(_INSERT_ENTRY), moved)  # 24 moved to 23, keeping its MAC
    assert _problems(filled)[0] == ("forged", 23)


def test_a_tail_cut_beneath_the_newest_checkpoint_is_reported(filled: AuditLog, tamper) -> None:
    append_n(filled, 95, start=20)
    assert filled.checkpoint().size == 115  # signed, as the service does within a second
    tamper(filled.engine, "DELETE FROM audit_entry WHERE seq > 20")
    assert _problems(filled) == [("truncated", 21)]
    with pytest.raises(AuditIntegrityError):
        filled.checkpoint()  # the cut log is not extended either


# -- item: the application role cannot forge entries or stop the log ------------------


def test_a_correctly_hashed_entry_inserted_as_the_app_role_is_named(log: AuditLog) -> None:
    append_n(log, 6)
    assert log.checkpoint().size == 6
    forged = forge_next_entry(log.engine)
    append_n(log, 3, start=6)  # the service carries on after it
    assert _problems(log) == [("forged", forged)]
    assert "ghost.user" not in str(log.verify().problem)  # names the entry, not its content


def test_an_inserted_entry_with_a_mac_copied_from_another_is_named(log: AuditLog) -> None:
    append_n(log, 3)
    mac = _rows(log.engine, 3)[0]["mac"]
    forged = forge_next_entry(log.engine, mac=mac)
    assert _problems(log) == [("forged", forged)]


def test_junk_checkpoint_rows_are_reported_skipped_and_never_block_signing(
    filled: AuditLog,
) -> None:
    with filled.engine.connect() as conn:
        valid_note = conn.execute(
            sa.text("SELECT note FROM audit_checkpoint WHERE tree_size = 20")
        ).scalar_one()
    # Junk at the next sizes (where the log will sign), far ahead, and a copy of a
    # genuine note under a size it does not sign.
    insert_junk_checkpoints(filled.engine, [21, 22, 25, 10**9])
    with app_role(filled.engine) as conn:
        conn.execute(
            sa.text(
                "INSERT INTO audit_checkpoint (note_hash, tree_size, root_hash, signed_at, note, "
                "frontier) VALUES (:h, 10000, :root, '2026-01-01T00:00:00.000000Z', :note, '[]')"
            ),
            {"h": b"\x99" * 32, "root": bytes(32), "note": valid_note},
        )
    assert filled.latest_checkpoint().size == 20  # never the junk
    report = filled.verify()
    assert not report.ok and report.entries == 20
    assert [p.kind for p in report.all_problems()] == ["checkpoint"] * 5
    assert all("skipped" in p.message for p in report.all_problems())

    append_n(filled, 5, start=20)
    cp = filled.checkpoint()  # signs over the sizes the junk claimed
    assert cp is not None and cp.size == 25
    assert filled.latest_checkpoint().size == 25
    report = filled.verify()
    assert report.entries == 25 and len(report.all_problems()) == 5
    assert {p.kind for p in report.all_problems()} == {"checkpoint"}

    out = StringIO()
    filled.export_bundle(out)  # the bundle leaves the junk out and verifies offline
    offline = verify_bundle(json.loads(out.getvalue()), public_key=filled.public_key)
    assert offline.ok, offline.summary()
    assert offline.latest_checkpoint.size == 25


def test_a_damaged_copy_of_the_newest_note_does_not_force_a_rebuild(filled: AuditLog) -> None:
    with filled.engine.connect() as conn:
        note = conn.execute(
            sa.text("SELECT note FROM audit_checkpoint WHERE tree_size = 20")
        ).scalar_one()
    root = filled.latest_checkpoint().root
    with app_role(filled.engine) as conn:
        conn.execute(
            sa.text(
                "INSERT INTO audit_checkpoint (note_hash, tree_size, root_hash, signed_at, note, "
                "frontier) VALUES (:h, 20, :root, '2026-01-01T00:00:00.000000Z', :note, '[\"00\"]')"
            ),
            {"h": b"\x77" * 32, "root": root, "note": note},
        )
    append_n(filled, 2, start=20)
    assert filled.checkpoint().size == 22
    assert filled.verify().ok  # a copy of a genuine checkpoint is the same checkpoint


# -- older key files -----------------------------------------------------------------


def _without_mac_key(vault: Vault) -> None:
    path = vault.settings.resolved_key_file
    data = json.loads(path.read_text())
    data.pop("audit_mac")
    write_key_file(path, data)


def test_an_older_key_file_gains_a_mac_key_and_older_entries_are_unmaced(
    vault: Vault, clock
) -> None:
    _without_mac_key(vault)
    before = AuditLog(
        engine=vault.engine,
        keys=load_key_file(vault.settings.resolved_key_file),
        settings=vault.settings,
        clock=clock,
        auto_checkpoint=False,
    )
    append_n(before, 7)  # written before the vault had a MAC key
    assert all(r["mac"] is None for r in _rows(vault.engine, 1))
    before.checkpoint()

    opened = open_vault(vault.settings, engine=vault.engine)  # the first start after upgrade
    assert opened.audit_mac_added_from == 8
    assert opened.keys.audit_mac_key().from_seq == 8
    assert open_vault(vault.settings, engine=vault.engine).audit_mac_added_from is None
    log = AuditLog(engine=vault.engine, keys=opened.keys, settings=vault.settings, clock=clock)
    append_n(log, 3, start=7)
    append_n(before, 2, start=10)  # a process that loaded the key file before: MACs too
    report = log.verify()
    assert report.ok, report.summary()
    assert any("entries 1..7 were written before" in n for n in report.notes)
    assert any("MACs checked for entries 8..12" in n for n in report.notes)

    forged = forge_next_entry(vault.engine)
    assert _problems(log) == [("forged", forged)]


def test_verify_without_a_mac_key_says_so(filled: AuditLog) -> None:
    class NoMacKeys:
        vault_id = filled.keys.vault_id

        def audit_signing_key(self):
            return filled.keys.audit_signing_key()

    log = AuditLog(engine=filled.engine, keys=NoMacKeys(), settings=filled.settings)
    report = log.verify()
    assert report.ok and any("not checked" in n for n in report.notes)


def test_a_mac_column_holding_text_is_named_not_a_crash(log: AuditLog) -> None:
    """Anyone who can write the SQLite file can put text where a MAC's bytes belong:
    verification names that entry as forged instead of failing with a TypeError."""
    if log.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's bytea column holds only bytes")
    append_n(log, 3)
    forged = forge_next_entry(log.engine, mac="x" * 32)
    append_n(log, 2, start=4)
    assert _problems(log) == [("forged", forged)]
    assert log.verify(workers=2).problems[0].kind == "forged"
