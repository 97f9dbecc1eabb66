"""KEK rotation: rewrap every DEK of a level under a new KEK version, content untouched.

The target version is recorded in the database (``rotation_state``) before
any DEK moves, and each batch commits on its own, so a crash at any point
leaves every archive readable (each DEK is wrapped under the old or the new
version, and the key file holds both) and a rerun resumes at the target
instead of starting another rotation. A version is retired (its key material
erased from the key file, or its object destroyed in the HSM) only when no DEK
is wrapped under it any more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from audit.events import Actor, AuditAction, AuditEvent
from foundation.db import transaction
from vault.errors import ValidationFailed
from vault.keys import LEVELS
from vault.models import Archive, RotationState, VaultMeta, table_of
from vault.store import ArchiveStore


@dataclass
class RotationReport:
    level: str
    target_version: int
    rewrapped: int = 0
    resumed: bool = False
    retired: list[int] = field(default_factory=list)
    counts: dict[int, int] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "target_version": self.target_version,
            "rewrapped": self.rewrapped,
            "resumed": self.resumed,
            "retired": self.retired,
            "counts": self.counts,
        }


def kek_counts(session: Session) -> dict[str, dict[int, int]]:
    """How many live DEKs each KEK version wraps, per level (what retirement waits on)."""
    out: dict[str, dict[int, int]] = {lvl: {} for lvl in LEVELS}
    rows = session.execute(
        sa.select(col(Archive.classification), col(Archive.kek_version), sa.func.count())
        .where(col(Archive.wrapped_dek).is_not(None))
        .group_by(col(Archive.classification), col(Archive.kek_version))
    ).all()
    for level, version, n in rows:
        out.setdefault(level, {})[int(version)] = int(n)
    return out


def _set_active(session: Session, level: str, version: int) -> None:
    key = f"kek_active:{level}"
    row = session.get(VaultMeta, key)
    if row is None:
        session.add(VaultMeta(key=key, value=str(version)))
    else:
        row.value = str(version)
        session.add(row)


def rotate(
    store: ArchiveStore,
    *,
    actor: Actor,
    levels: Iterable[str] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[RotationReport]:
    """Rotate each level's KEK (or finish an interrupted rotation) and retire empty versions.

    ``progress(level, done, total)`` is called after each committed batch.
    """
    chosen = list(levels) if levels else list(LEVELS)
    unknown = sorted(set(chosen) - set(LEVELS))
    if unknown:
        raise ValidationFailed(f"unknown classification level(s): {', '.join(unknown)}")
    engine, keys, batch = store.engine, store.keys, store.settings.rotate_batch
    reports = []
    for level in chosen:
        with transaction(engine) as session:
            state = session.get(RotationState, level)
            resumed = state is not None
            if state is None:
                current = store.envelope.active_kek(session, level)
                state = RotationState(classification=level, target_version=current + 1)
                session.add(state)
            target = state.target_version
        # Key material for the target goes to the key file before any DEK uses it.
        while keys.active_version(level) < target:
            keys.add_version(level)
        with transaction(engine) as session:
            _set_active(session, level, target)
        report = RotationReport(level=level, target_version=target, resumed=resumed)
        keys.check_kek(level, target)
        with Session(engine) as session:
            total = session.execute(
                sa.select(sa.func.count())
                .select_from(Archive)
                .where(
                    col(Archive.classification) == level,
                    col(Archive.kek_version) != target,
                    col(Archive.wrapped_dek).is_not(None),
                )
            ).scalar_one()
        last_id = 0
        while True:
            with transaction(engine) as session:
                rows = session.execute(
                    sa.select(
                        col(Archive.id),
                        col(Archive.archive_no),
                        col(Archive.kek_version),
                        col(Archive.wrapped_dek),
                    )
                    .where(
                        col(Archive.classification) == level,
                        col(Archive.kek_version) != target,
                        col(Archive.wrapped_dek).is_not(None),
                        col(Archive.id) > last_id,
                    )
                    .order_by(col(Archive.id))
                    .limit(batch)
                ).all()
                if not rows:
                    break
                updates = []
                envelope = store.envelope
                for archive_id, no, version, wrapped in rows:
                    dek = envelope.unwrap(no, level, version, wrapped)
                    updates.append(
                        {
                            "b_id": archive_id,
                            "b_old": version,
                            "b_ct": envelope.wrap(dek, no, level, target),
                        }
                    )
                table = table_of(Archive)
                # Guarded by the old version: a concurrent reclassify or destroy wins.
                session.execute(
                    sa.update(table)
                    .where(
                        table.c.id == sa.bindparam("b_id"),
                        table.c.kek_version == sa.bindparam("b_old"),
                        table.c.classification == level,
                    )
                    .values(wrapped_dek=sa.bindparam("b_ct"), kek_version=target),
                    updates,
                    execution_options={"synchronize_session": False},
                )
                last_id = rows[-1][0]
            report.rewrapped += len(rows)
            if progress:
                progress(level, report.rewrapped, total)
        with transaction(engine) as session:
            counts = kek_counts(session).get(level, {})
            pending = sum(n for v, n in counts.items() if v != target)
            if pending == 0:
                stale = session.get(RotationState, level)
                if stale is not None:
                    session.delete(stale)
            session.flush()
            store.audit.append(
                session,
                AuditEvent(
                    action=AuditAction.KEY_ROTATE,
                    actor=actor,
                    detail={
                        "level": level,
                        "target_version": target,
                        "rewrapped": report.rewrapped,
                        "resumed": resumed,
                        "counts": {str(k): v for k, v in counts.items()},
                    },
                ),
            )
        if pending == 0:
            for version, meta in keys.versions(level).items():
                if version != target and counts.get(version, 0) == 0 and not meta["retired_at"]:
                    keys.retire(level, version)
                    report.retired.append(version)
        report.counts = counts
        reports.append(report)
    store.envelope.forget_keks()
    return reports
