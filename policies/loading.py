"""The database side of decisions: archive metadata, grant rows and their revisions.

A grant reaches a ``PolicyEngine`` one way only: every write to an ``AccessGrant``
row (approval, confirmation, return, revocation, expiry) stamps it with the next
value of the ``grants`` counter row (:func:`next_revision`), bumped in the same
transaction; every engine, in whichever process, catches up by reading the rows
whose revision is above the last one it saw (:class:`GrantFeed`). A rolled-back
write never bumps the counter for good, so it never grants; a committed revocation
is seen by the next decision of every process that catches up first.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlmodel import Session, select

from foundation.rawsql import Raw, RawTx
from policies.errors import NotFound
from policies.grants import GrantLink, to_us
from policies.models import AccessGrant, PolicyCounter
from policies.roles import GrantState
from vault.meta import ArchiveMeta
from vault.models import Archive, ArchiveContact
from vault.schema import SHIPPED_SCHEMA_FILE, load_schema

_COUNTER_T = PolicyCounter.__table__  # type: ignore[attr-defined]
_GRANT_T = AccessGrant.__table__  # type: ignore[attr-defined]
GRANTS = "grants"  # the counter row grant changes bump
_GRANT_COUNTER = Raw(sa.select(_COUNTER_T.c.value).where(_COUNTER_T.c.name == GRANTS))
_GRANTS_AFTER = Raw(
    sa.select(_GRANT_T).where(_GRANT_T.c.rev > sa.bindparam("rev")).order_by(_GRANT_T.c.rev)
)
_ACTIVE_GRANTS_AFTER = Raw(
    sa.select(_GRANT_T)
    .where(_GRANT_T.c.rev > sa.bindparam("rev"), _GRANT_T.c.state == GrantState.ACTIVE.value)
    .order_by(_GRANT_T.c.rev)
)


def shipped_groups() -> tuple[str, ...]:
    """The field groups of the shipped profile schema (when a caller names none)."""
    return tuple(load_schema(SHIPPED_SCHEMA_FILE).groups)


def known_groups_or_shipped(known_groups: Sequence[str] | None) -> tuple[str, ...]:
    return tuple(known_groups) if known_groups is not None else shipped_groups()


def load_archive_meta(session: Session, archive_no: str) -> ArchiveMeta:
    """Read one archive's metadata and contacts; raises ``NotFound``."""
    archive = session.exec(select(Archive).where(Archive.archive_no == archive_no)).first()
    if archive is None:
        raise NotFound(f"no archive {archive_no}")
    contacts = session.exec(
        select(ArchiveContact.username).where(ArchiveContact.archive_id == archive.id)
    ).all()
    return ArchiveMeta.of(archive, contacts)


def next_revision(session: Session) -> int:
    """Bump the grant revision counter inside the caller's transaction.

    The counter row is locked until commit, so revisions commit in order and an
    engine catching up never skips a change.
    """
    table = _COUNTER_T
    dialect = session.get_bind().dialect.name
    ins = pg_insert(table) if dialect == "postgresql" else sqlite_insert(table)
    session.connection().execute(ins.values(name="grants", value=0).on_conflict_do_nothing())
    value = (
        session.connection()
        .execute(
            sa.update(table)
            .where(table.c.name == "grants")
            .values(value=table.c.value + 1)
            .returning(table.c.value)
        )
        .scalar_one()
    )
    return int(value)


def link_of(row: Any) -> GrantLink:
    """The in-memory link of one ``AccessGrant`` row (an ORM object or a Core row)."""
    return GrantLink(
        uid=row.uid,
        kind=row.kind,
        subject=row.subject,
        archives=tuple(row.archives),
        actions=tuple(row.actions),
        groups=frozenset(row.groups),
        not_before=to_us(row.not_before),
        not_after=to_us(row.not_after),
        custodian_signed=bool(row.custodian_signed),
        purpose=row.purpose,
        reason=row.reason,
        request_uid=getattr(row, "request_uid", "") or "",
        classification=row.approved_classification,
        custodian=row.approved_custodian,
        awaiting_confirmation=bool(row.awaiting_confirmation),
    )


@functools.cache
def _counters_named(count: int) -> Raw:
    # One named parameter per name (Raw takes no expanding IN).
    wanted: list[Any] = [sa.bindparam(f"n{i}") for i in range(count)]
    row = _COUNTER_T.c
    return Raw(sa.select(row.name, row.value).where(row.name.in_(wanted)))


def counters(tx: Session | Connection | RawTx, *names: str) -> dict[str, int]:
    """Several counter rows in one statement (0 for one not yet created).

    The audited read catches up grants and decoys by their counters on every
    request: one indexed statement for both instead of one each.
    """
    params = {f"n{i}": n for i, n in enumerate(names)}
    rows = _counters_named(len(names)).all(tx, params)
    found = {name: int(value or 0) for name, value in rows}
    return {name: found.get(name, 0) for name in names}


class GrantFeed:
    """Reads the grant changes committed after a revision, on the caller's transaction."""

    @staticmethod
    def latest(tx: Session | Connection | RawTx) -> int:
        """The revision of the latest committed grant change (0 before any)."""
        return int(_GRANT_COUNTER.scalar(tx) or 0)

    @staticmethod
    def after(tx: Session | Connection | RawTx, rev: int) -> Sequence[Any]:
        """The grant rows changed after ``rev``, in revision order; from 0, only the
        active ones (an engine starting empty has nothing to drop)."""
        query = _ACTIVE_GRANTS_AFTER if rev == 0 else _GRANTS_AFTER
        return query.all(tx, {"rev": rev})
