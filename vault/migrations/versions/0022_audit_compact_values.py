"""audit time, action and outcome stored as integers

Revision ID: 0022
Revises: 0021

``audit_entry`` and ``audit_queue`` store ``time`` as microseconds since the
epoch and ``action`` and ``outcome`` as the fixed codes of ``audit.stored``
instead of their text. What the entries say does not change: the types give
back the same canonical text, so every hash, MAC and signed checkpoint still
verifies. About 70 bytes less per entry across the row and its three indexes.

The codes are written out below as they stand today, not imported: a
migration must mean the same thing whatever the code of a later version says.

A log holding a time not in the canonical form, or an action or outcome no
code names, was edited outside the vault: the upgrade refuses it (nothing
changes) and says to verify the log. SQLite rebuilds both tables (a column's
type cannot change in place) and reinstalls their guards in the same
transaction; PostgreSQL changes the types in place, keeping triggers and
grants, and rebuilds the indexes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

_ACTIONS = (
    "archive:read",
    "archive:search",
    "archive:list",
    "archive:create",
    "archive:update",
    "archive:import",
    "archive:export",
    "archive:report",
    "archive:reassign",
    "archive:reclassify",
    "archive:destroy",
    "archive:consent-withdraw",
    "archive:consent-record",
    "archive:interaction-add",
    "archive:interaction-read",
    "archive:attachment-add",
    "archive:attachment-read",
    "archive:attachment-list",
    "loan:open",
    "loan:return",
    "request:file",
    "request:approve",
    "request:deny",
    "request:withdraw",
    "request:expire",
    "request:rechain",
    "request:list",
    "auth:login",
    "auth:login-failed",
    "auth:logout",
    "user:change",
    "user:list",
    "keys:rotate",
    "policy:change",
    "vault:init",
    "vault:seal-manifests",
    "vault:mask-names",
    "audit:read",
    "audit:verify",
    "leak:report",
    "leak:change",
    "leak:read",
    "vault:inspect",
    "inspection:read",
    "detection:decoy-mark",
    "detection:decoy-list",
    "archive:access-report",
)
_OUTCOMES = ("allowed", "denied", "error")
# Codes are positions from 1, as audit.stored numbers them.
ACTION_CODES = {name: i for i, name in enumerate(_ACTIONS, 1)}
OUTCOME_CODES = {name: i for i, name in enumerate(_OUTCOMES, 1)}

_TABLES = ("audit_entry", "audit_queue")
# Columns after the three that change, as each table has them (same order as created).
_REST = {
    "audit_entry": (
        "actor, actor_role, archives, groups, grant_id, purpose, reason, client, detail, "
        "prev_hash, entry_hash, mac"
    ),
    "audit_queue": (
        "actor, actor_role, archives, groups, grant_id, purpose, reason, client, detail, mac"
    ),
}
_KEY = {"audit_entry": "seq", "audit_queue": "id"}


def _case(column: str, codes: dict[str, int], *, to_code: bool) -> str:
    """A CASE from names to codes (or back); anything else gives NULL, refused by NOT NULL."""
    if to_code:
        whens = " ".join(f"WHEN '{name}' THEN {code}" for name, code in codes.items())
    else:
        whens = " ".join(f"WHEN {code} THEN '{name}'" for name, code in codes.items())
    return f"CASE {column} {whens} END"


def _bad_rows(bind: sa.Connection, table: str) -> int:
    """Rows that would not convert exactly: a non-canonical time, an unknown name."""
    actions = ", ".join(f"'{a}'" for a in ACTION_CODES)
    outcomes = ", ".join(f"'{o}'" for o in OUTCOME_CODES)
    if bind.dialect.name == "sqlite":
        time_ok = (
            "typeof(time) = 'text' AND length(time) = 27 AND substr(time, 20, 1) = '.' "
            "AND substr(time, 27, 1) = 'Z' "
            "AND substr(time, 21, 6) GLOB '[0-9][0-9][0-9][0-9][0-9][0-9]' "
            "AND strftime('%Y-%m-%dT%H:%M:%S', substr(time, 1, 19)) = substr(time, 1, 19)"
        )
    else:
        # The pattern first, so the cast only ever sees text of the right shape.
        time_ok = (
            r"time ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$' AND "
            "CASE WHEN time ~ "
            r"'^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d' "
            "THEN to_char(substr(time, 1, 19)::timestamp, 'YYYY-MM-DD\"T\"HH24:MI:SS') "
            "= substr(time, 1, 19) ELSE false END"
        )
    sql = (
        f"SELECT count(*) FROM {table} WHERE NOT ({time_ok}) "  # noqa: S608 - constants
        f"OR action NOT IN ({actions}) OR outcome NOT IN ({outcomes})"
    )
    return int(bind.exec_driver_sql(sql).scalar_one())


def _micros(dialect: str) -> str:
    if dialect == "sqlite":
        return (
            "CAST(strftime('%s', substr(time, 1, 19)) AS INTEGER) * 1000000 "
            "+ CAST(substr(time, 21, 6) AS INTEGER)"
        )
    return (
        "floor(extract(epoch FROM substr(time, 1, 19)::timestamp))::bigint * 1000000 "
        "+ substr(time, 21, 6)::bigint"
    )


def _text(dialect: str) -> str:
    if dialect == "sqlite":
        return (
            "strftime('%Y-%m-%dT%H:%M:%S', time / 1000000, 'unixepoch') || '.' "
            "|| printf('%06d', time % 1000000) || 'Z'"
        )
    return (
        "to_char(to_timestamp(time / 1000000) AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS') || '.' || lpad(mod(time, 1000000)::text, 6, '0') || 'Z'"
    )


def _columns(table: str, *, compact: bool) -> list[sa.Column[object]]:
    """Every column of the table as it is on one side of this revision."""
    time_type: sa.types.TypeEngine[object] = sa.BigInteger() if compact else sa.String(27)
    action_type: sa.types.TypeEngine[object] = sa.SmallInteger() if compact else sa.String(64)
    outcome_type: sa.types.TypeEngine[object] = sa.SmallInteger() if compact else sa.String(16)
    if table == "audit_entry":
        key = [sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False)]
    else:
        key = [sa.Column("id", sa.Integer(), sa.Identity(), primary_key=True)]
    hashes = (
        [
            sa.Column("prev_hash", sa.LargeBinary(32), nullable=False),
            sa.Column("entry_hash", sa.LargeBinary(32), nullable=False),
        ]
        if table == "audit_entry"
        else []
    )
    return [
        *key,
        sa.Column("time", time_type, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("actor_role", sa.String(100), nullable=False),
        sa.Column("action", action_type, nullable=False),
        sa.Column("outcome", outcome_type, nullable=False),
        sa.Column("archives", sa.Text(), nullable=False),
        sa.Column("groups", sa.Text(), nullable=False),
        sa.Column("grant_id", sa.String(200), nullable=True),
        sa.Column("purpose", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("client", sa.String(200), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        *hashes,
        sa.Column("mac", sa.LargeBinary(32), nullable=True),
    ]


def _rebuild_sqlite(bind: sa.Connection, *, compact: bool) -> None:
    """Each table copied into its new shape, converted, renamed back; guards reinstalled."""
    from audit.guards import install_guards_on

    if compact:
        values = (
            _micros("sqlite"),
            _case("action", ACTION_CODES, to_code=True),
            _case("outcome", OUTCOME_CODES, to_code=True),
        )
    else:
        values = (
            _text("sqlite"),
            _case("action", ACTION_CODES, to_code=False),
            _case("outcome", OUTCOME_CODES, to_code=False),
        )
    bind.exec_driver_sql("PRAGMA legacy_alter_table=ON")
    try:
        for table in _TABLES:
            new = f"_{table}_new"
            op.create_table(new, *_columns(table, compact=compact))
            key, rest = _KEY[table], _REST[table]
            bind.exec_driver_sql(
                f"INSERT INTO {new} ({key}, time, action, outcome, {rest}) "  # noqa: S608
                f"SELECT {key}, {values[0]}, {values[1]}, {values[2]}, {rest} "
                f"FROM {table} ORDER BY {key}"
            )
            op.drop_table(table)  # its indexes and triggers go with it
            op.rename_table(new, table)
    finally:
        bind.exec_driver_sql("PRAGMA legacy_alter_table=OFF")
    op.create_index("ix_audit_entry_time", "audit_entry", ["time"])
    op.create_index("ix_audit_entry_action", "audit_entry", ["action"])
    op.create_index("ix_audit_entry_actor_time", "audit_entry", ["actor", "time"])
    install_guards_on(bind)


def _retype_postgres(bind: sa.Connection, *, compact: bool) -> None:
    for table in _TABLES:
        if compact:
            parts = (
                f"time TYPE bigint USING ({_micros('postgresql')})",
                f"action TYPE smallint USING ({_case('action', ACTION_CODES, to_code=True)})",
                f"outcome TYPE smallint USING ({_case('outcome', OUTCOME_CODES, to_code=True)})",
            )
        else:
            parts = (
                f"time TYPE varchar(27) USING ({_text('postgresql')})",
                f"action TYPE varchar(64) USING ({_case('action', ACTION_CODES, to_code=False)})",
                "outcome TYPE varchar(16) USING "
                f"({_case('outcome', OUTCOME_CODES, to_code=False)})",
            )
        bind.exec_driver_sql(
            f"ALTER TABLE {table} " + ", ".join(f"ALTER COLUMN {p}" for p in parts)
        )


def upgrade() -> None:
    bind = op.get_bind()
    for table in _TABLES:
        bad = _bad_rows(bind, table)
        if bad:
            raise RuntimeError(
                f"{bad} rows of {table} hold a time not in the form "
                "YYYY-MM-DDTHH:MM:SS.ffffffZ or an action or outcome the vault never "
                "writes: the log was edited outside the vault. Run `archive-vault audit "
                "verify` and restore the log before upgrading."
            )
    if bind.dialect.name == "sqlite":
        _rebuild_sqlite(bind, compact=True)
    else:
        _retype_postgres(bind, compact=True)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        _rebuild_sqlite(bind, compact=False)
    else:
        _retype_postgres(bind, compact=False)
