"""Naming the export a leaked file came from, on a leak case (Art 27).

Compliance or a handler uploads a leaked file, or an excerpt of one (CSV or
JSON), to a case. The vault reads the archive numbers and cells it holds,
scores every export that held any of those archives (``policies.fingerprint``)
and names the one the file agrees with, with its requester, approvers and
recipient and a confidence figure, only when the chance that an unrelated file
agrees as well is below 1 % after correcting for every export ever made.
A file that never left the vault (rendered plainly, or marked under another
vault's key) agrees with every export about half the time and names none.

Nothing of the file is kept or logged: it is parsed in memory, and the case
event and its audit entry hold the verdict alone (export id, usernames, counts,
confidence). A file that is not CSV or JSON, is empty, too large or holds no
archive number is refused before anything is written.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from audit.events import Actor, AuditAction, AuditEvent, Outcome
from policies.decision import Principal
from policies.errors import InvalidInput, NotFound, Refused
from policies.fingerprint import ALGORITHM, CONFIDENCE, Candidate, Fingerprinter
from policies.fingerprint_models import ExportFingerprint
from policies.leak_models import LeakCase
from policies.leaks import LeakCases
from policies.models import AccessRequest, RequestSignature
from vault.records import ARCHIVE_NO

MAX_BYTES = 16 * 1024 * 1024  # a leaked file or excerpt; exports of 5,000 rows are < 2 MiB
MAX_ROWS = 200_000
SHOWN = 5  # the best-scoring exports listed besides the one named


class UnsupportedFile(InvalidInput):
    """The upload is not a CSV or JSON text file."""

    code = "unsupported-file"


def _decode(data: bytes) -> str:
    if not data.strip():
        raise InvalidInput("the file is empty")
    if b"\x00" in data:
        raise UnsupportedFile("the file is not text; upload the leaked CSV or JSON file")
    # UTF-8 as exported; GB 18030 as a Chinese spreadsheet saves "CSV".
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise UnsupportedFile("the file is neither UTF-8 nor GB 18030 text")


def _flat(obj: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    if not isinstance(obj, dict):
        return out
    for key, value in obj.items():
        if isinstance(value, dict):
            out.update({str(k): str(v) for k, v in value.items() if not isinstance(v, dict)})
        elif isinstance(value, str | int | float):
            out[str(key)] = str(value)
    return out


def _json_rows(text: str) -> list[dict[str, str]]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise UnsupportedFile("the file starts like JSON but is not valid JSON") from None
    if isinstance(data, dict):
        data = data.get("items", [data])
    if not isinstance(data, list):
        raise UnsupportedFile("a JSON upload is a list of rows (as exported)")
    return [_flat(item) for item in data[:MAX_ROWS]]


def _csv_rows(text: str, names: dict[str, str]) -> list[dict[str, str]]:
    sample = text[:8192]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    try:
        table = list(_limited(csv.reader(io.StringIO(text, newline=""), dialect)))
    except csv.Error:
        raise UnsupportedFile("the file is not CSV (rows could not be read)") from None
    if not table:
        raise InvalidInput("the file is empty")
    header = [names.get(h.strip().lstrip("\ufeff"), h.strip()) for h in table[0]]
    body = table[1:]
    if "archive_no" not in header:  # a file without its header: find the number column
        header = ["archive_no" if ARCHIVE_NO.fullmatch(c.strip()) else "" for c in table[0]]
        body = table
    return [{h: c for h, c in zip(header, row, strict=False) if h} for row in body]


def _limited(reader: Iterable[list[str]]) -> Iterable[list[str]]:
    for i, row in enumerate(reader):
        if i > MAX_ROWS:
            raise InvalidInput(f"the file has more than {MAX_ROWS} rows")
        yield row


def parse(data: bytes, names: dict[str, str]) -> list[dict[str, str]]:
    """The rows of an uploaded file, flat (``archive_no`` and field names); content-free
    errors. ``names`` maps column labels (Chinese, English) to field names."""
    if len(data) > MAX_BYTES:
        raise InvalidInput(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    text = _decode(data)
    first = text.lstrip()[:1]
    rows = _json_rows(text) if first in ("[", "{") else _csv_rows(text, names)
    rows = [
        r | {"archive_no": r.get("archive_no", "").strip().lstrip("'")}
        for r in rows
        if ARCHIVE_NO.fullmatch(r.get("archive_no", "").strip().lstrip("'"))
    ]
    if not rows:
        raise InvalidInput(
            "the file holds no archive numbers (KH-YYYY-NNNNNN): it is not an export "
            "of this vault or an excerpt of one"
        )
    return rows


class Attribution:
    """Scores an uploaded file against every export and records the verdict on the case."""

    def __init__(self, leaks: LeakCases, fingerprinter: Fingerprinter) -> None:
        self.leaks = leaks
        self.fingerprinter = fingerprinter
        schema = fingerprinter.schema
        self.names = {
            label: name
            for name, spec in schema.fields.items()
            for label in (name, spec.zh, spec.en)
        }

    def check(
        self, session: Session, uid: str, principal: Principal, actor: Actor, now: datetime
    ) -> None:
        """Before any byte is read: only compliance and the handlers trace a file
        (refused and audited for anyone else, whether or not the case exists)."""
        if not self.leaks.may_list_all(principal, now):
            raise Refused(
                "only compliance, the information supervisor and the customer-service "
                "manager trace a leaked file to its export",
                rule="read_leaks",
                event=AuditEvent(
                    action=AuditAction.LEAK_CHANGE,
                    actor=actor,
                    outcome=Outcome.DENIED,
                    detail={"case": uid[:32], "kind": "fingerprint"},
                ),
            )
        if session.exec(select(LeakCase.id).where(LeakCase.uid == uid[:32])).first() is None:
            raise NotFound(f"no leak case {uid[:32]!r}")

    def attribute(
        self,
        session: Session,
        uid: str,
        principal: Principal,
        actor: Actor,
        now: datetime,
        data: bytes,
    ) -> dict[str, Any]:
        """The verdict for ``data`` on case ``uid``, recorded on the case and audited."""
        self.check(session, uid, principal, actor, now)
        rows = parse(data, self.names)  # before anything is written
        case, _ = self.leaks.load(session, uid, principal, actor, now)
        numbers = {r["archive_no"] for r in rows}
        total = int(session.exec(select(sa.func.count(col(ExportFingerprint.id)))).one())
        kept = {}
        candidates = []
        for fp in session.exec(select(ExportFingerprint)).all():
            if numbers.isdisjoint(fp.archives) and numbers.isdisjoint(fp.decoys):
                continue
            fields = self.fingerprinter.schema
            held = frozenset(f for g in fp.groups for f in fields.groups[g].fields)
            kept[fp.uid] = fp
            candidates.append(Candidate(fp.uid, frozenset(fp.archives), held, tuple(fp.decoys)))
        scores = self.fingerprinter.score(rows, candidates, total)
        best = scores[0] if scores and scores[0].confidence >= CONFIDENCE else None
        verdict: dict[str, Any] = {
            "method": f"{ALGORITHM} renderings, binomial tail, Bonferroni over {total} exports",
            "rows": len(rows),
            "exports_compared": len(candidates),
            "threshold": CONFIDENCE,
            "named": self._named(session, kept[best.uid]) | best.public() if best else None,
            "confidence": round(best.confidence, 6) if best else None,
            "best": [s.public() for s in scores[:SHOWN]],
        }
        self.leaks.record(
            session,
            case,
            actor,
            now,
            kind="fingerprint",
            detail={
                "export": best.uid if best else None,
                # The audit log holds no floats: the figure as text, six decimals.
                "confidence": f"{best.confidence:.6f}" if best else None,
                "rows": len(rows),
                "bits": best.bits if best else None,
                "exports_compared": len(candidates),
            }
            | (
                {k: verdict["named"][k] for k in ("request", "requester", "approvers")}
                if best
                else {}
            ),
        )
        return verdict

    @staticmethod
    def _named(session: Session, fp: ExportFingerprint) -> dict[str, Any]:
        request = session.exec(
            select(AccessRequest).where(AccessRequest.uid == fp.request_uid)
        ).first()
        approvers: list[str] = []
        if request is not None:
            approvers = list(
                session.exec(
                    select(RequestSignature.signer)
                    .where(
                        RequestSignature.request_id == request.id,
                        RequestSignature.decision == "approve",
                    )
                    .order_by(col(RequestSignature.stage_index))
                ).all()
            )
        return {
            "request": fp.request_uid,
            "grant": fp.grant_uid,
            "kind": fp.kind,
            "requester": request.requester if request else None,
            "exported_by": fp.exported_by,
            "approvers": approvers,
            "recipient": (request.recipient or None) if request else None,
            "copy": fp.copy_no,
            "format": fp.format,
            "exported_at": fp.created_at.isoformat(),
        }
