"""Each export's fingerprint, kept with the export in its transaction.

``ArchiveActs.export`` asks for a fingerprint id before it writes the export's
audit entry (the id goes into that entry), and keeps the fingerprint's register
row (``fingerprint_models``) in the same transaction: an export whose entry
committed always has its register row, and one rolled back has neither. The
rows written to the file are marked here too (``rows``), so every format writes
the same renderings and the same decoys.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col

from policies.desk import new_uid
from policies.fingerprint import Fingerprinter, Row, decoys_for
from policies.fingerprint_models import ExportFingerprint
from policies.models import AccessGrant
from vault.models import Archive
from vault.reading import ArchiveView
from vault.records import ARCHIVE_NO


class ExportMarks:
    """Fingerprint ids, the register, and the marked rows of an export."""

    def __init__(self, fingerprinter: Fingerprinter) -> None:
        self.fingerprinter = fingerprinter

    @staticmethod
    def new_id() -> str:
        return new_uid("FP")

    def keep(
        self,
        session: Session,
        uid: str,
        *,
        grant: AccessGrant,
        exported_by: str,
        copy: int,
        fmt: str,
        views: Sequence[ArchiveView],
        now: datetime,
    ) -> ExportFingerprint:
        """Choose the decoys' numbers and keep the register row, in the export's transaction."""
        numbers = [v.meta.archive_no for v in views]
        years = [m.group(1) for n in numbers if (m := ARCHIVE_NO.fullmatch(n))]

        def taken(no: str) -> bool:
            found = session.execute(
                sa.select(col(Archive.id)).where(col(Archive.archive_no) == no)
            ).first()
            return found is not None or no in numbers

        decoys = self.fingerprinter.decoy_numbers(uid, decoys_for(len(numbers)), years, taken)
        row = ExportFingerprint(
            uid=uid,
            request_uid=grant.request_uid,
            grant_uid=grant.uid,
            kind=grant.kind,
            exported_by=exported_by,
            copy_no=copy,
            format=fmt,
            archives=numbers,
            groups=list(grant.groups),
            decoys=decoys,
            created_at=now,
        )
        session.add(row)
        session.flush()
        return row

    def rows(
        self,
        uid: str,
        views: Sequence[ArchiveView],
        decoys: Sequence[str],
        groups: Sequence[str],
    ) -> list[Row]:
        """The rows as the file holds them: each value in its keyed rendering, decoys placed."""
        plain = [(v.meta.archive_no, v.content) for v in views]
        return self.fingerprinter.mark(uid, plain, decoys, groups)
