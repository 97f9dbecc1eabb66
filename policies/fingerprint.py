"""Export fingerprints: every copy or provision is marked so a leaked file names it.

The scheme follows Agrawal and Kiernan's database watermarking. For each row and
each field that has two equivalent renderings (``vault.renderings``: a mobile
written ``138 0013 8000`` or ``138-0013-8000``, digits in free text half- or
full-width, ...), the export writes the form chosen by one bit of
``HMAC-SHA256(key, export id ‖ archive number ‖ field)``; the key is derived
from the key file and never leaves the vault. Rows of other exports of the same
archives get independent bits, so an excerpt agrees with its own export on every
bit it carries and with any other export on about half of them.

Exports of 100 rows or more also carry decoy rows of their own
(``decoys_for``): synthetic customers, with archive numbers no archive holds when
the export is made and values drawn from the same key, placed at keyed positions.
A leaked file holding one names its export on that row alone.

What survives: any subset of rows (each row carries its own bits), any order
(bits are keyed by archive number, not position), and a spreadsheet opening the
CSV and saving it again (no form is a number, a date or whitespace; see
``vault.renderings``). Attribution (``score``) counts, per export, the bits a
file carries for that export's archives and fields and the bits that agree; the
chance that a file unrelated to that export agrees as often is a binomial tail,
multiplied by the number of exports ever made (a Bonferroni bound), and an
export is named only when that chance is below 1 %.

Limits: a reader who rewrites every value into one form (all digits half-width,
phones without spaces) erases the bits; fields without a safe pair (names,
choices, ID numbers, dates) carry none, so an excerpt of those alone is named
only through a decoy row; a decoy's number may later be given to a real archive
(its other values still tell the two apart); and colluding readers holding two
exports of the same rows can see where their renderings differ.
"""

from __future__ import annotations

import hmac
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from vault.formats import id_check_char
from vault.renderings import canonical, observe, pair
from vault.schema import FieldSpec, ProfileSchema

ALGORITHM = "HMAC-SHA256"
CONFIDENCE = 0.99  # an export is named only above this
DECOY_FROM = 100  # exports of fewer rows carry no decoy rows
DECOY_EVERY = 1000  # one decoy per this many rows (at least one from DECOY_FROM)
DECOY_P = 2.0**-32  # chance a file not from an export holds one of its decoys

Row = tuple[str, dict[str, dict[str, str]]]  # archive number, group -> field -> value

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍建国志红文斌"
_AREAS = ("010", "021", "020", "022", "023", "0755", "0571", "028", "027", "025")
_PROVINCES = "京津沪渝冀豫辽鲁苏浙鄂粤川陕"
_PLAIN = ("无", "暂无", "未填写", "待补充", "见备注")


def decoys_for(rows: int) -> int:
    """How many decoy rows an export of ``rows`` real rows carries."""
    return 0 if rows < DECOY_FROM else max(1, rows // DECOY_EVERY)


def binomial_tail(n: int, m: int) -> float:
    """P(X ≥ m) for X ~ Binomial(n, ½), summed in log space so it never underflows."""
    if m <= 0:
        return 1.0
    if m > n:
        return 0.0
    base = math.lgamma(n + 1) - n * math.log(2)
    logs: list[float] = []
    for k in range(m, n + 1):
        term = base - math.lgamma(k + 1) - math.lgamma(n - k + 1)
        logs.append(term)
        if 2 * k > n and term < logs[0] - 60:
            break
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in logs))


@dataclass(frozen=True, slots=True)
class Candidate:
    """What the vault kept of one export: its id, archives, fields and decoy numbers."""

    uid: str
    archives: frozenset[str]
    fields: frozenset[str]
    decoys: tuple[str, ...] = ()


@dataclass(slots=True)
class Score:
    """How far a file agrees with one export."""

    uid: str
    rows: int = 0  # leaked rows of this export's archives (decoys included)
    bits: int = 0
    agree: int = 0
    decoy_rows: int = 0
    p: float = 1.0  # chance an unrelated file agrees as much (before the correction)
    confidence: float = 0.0
    fields: set[str] = field(default_factory=set)

    def public(self) -> dict[str, object]:
        return {
            "export": self.uid,
            "rows": self.rows,
            "bits": self.bits,
            "agreeing": self.agree,
            "decoy_rows": self.decoy_rows,
            "confidence": round(self.confidence, 6),
        }


class Fingerprinter:
    """Marks export rows and scores leaked rows, under one key."""

    def __init__(self, key: bytes, schema: ProfileSchema) -> None:
        if len(key) < 32:
            raise ValueError("a fingerprint key has at least 32 bytes")
        self._key = key
        self.schema = schema

    def _mac(self, *parts: str) -> bytes:
        return hmac.digest(self._key, b"\x00".join(p.encode() for p in parts), "sha256")

    def bit(self, export_id: str, archive_no: str, field_name: str) -> int:
        return self._mac("bit", export_id, archive_no, field_name)[0] & 1

    # --- marking -----------------------------------------------------------------
    def mark(
        self, export_id: str, rows: Sequence[Row], decoys: Sequence[str], groups: Sequence[str]
    ) -> list[Row]:
        """The rows as the export writes them: renderings chosen, decoys placed."""
        out = [(no, self._rendered(export_id, no, content)) for no, content in rows]
        for i, no in enumerate(decoys):
            content = self._rendered(export_id, no, self.decoy(export_id, i, no, groups))
            at = int.from_bytes(self._mac("place", export_id, str(i))[:8], "big")
            out.insert(at % (len(out) + 1), (no, content))
        return out

    def _rendered(
        self, export_id: str, archive_no: str, content: Mapping[str, Mapping[str, str]]
    ) -> dict[str, dict[str, str]]:
        fields = self.schema.fields
        out: dict[str, dict[str, str]] = {}
        for g, values in content.items():
            out[g] = {}
            for f, v in values.items():
                # The keyed bit only where the value has two forms (most cells have none).
                forms = pair(fields[f].type, v) if f in fields else None
                out[g][f] = forms[self.bit(export_id, archive_no, f)] if forms else v
        return out

    def decoy_numbers(
        self, export_id: str, count: int, years: Iterable[str], taken: Callable[[str], bool]
    ) -> list[str]:
        """``count`` archive numbers for decoys, in the export's years, none ``taken``."""
        pool = sorted(set(years)) or ["2026"]
        out: list[str] = []
        tries = 0
        while len(out) < count:
            seed = int.from_bytes(self._mac("decoy-no", export_id, str(tries))[:8], "big")
            tries += 1
            no = f"KH-{pool[seed % len(pool)]}-{(seed >> 8) % 999_999 + 1:06d}"
            if no not in out and not taken(no):
                out.append(no)
        return out

    def decoy(
        self, export_id: str, index: int, archive_no: str, groups: Iterable[str]
    ) -> dict[str, dict[str, str]]:
        """A synthetic customer for decoy ``index``: plausible values, nobody's."""
        content: dict[str, dict[str, str]] = {}
        for g in groups:
            spec = self.schema.groups.get(g)
            if spec is None:
                continue
            made = {}
            for f in spec.fields:
                # One keyed seed per field, so a value never depends on which groups are asked.
                seed = self._mac("decoy", export_id, str(index), archive_no, f)
                made[f] = _synthetic(self.schema.fields[f], random.Random(seed))
            content[g] = {f: v for f, v in made.items() if v is not None}
        return content

    # --- attribution ---------------------------------------------------------------
    def score(
        self, rows: Sequence[Mapping[str, str]], candidates: Sequence[Candidate], exports: int
    ) -> list[Score]:
        """Each candidate's agreement with the leaked ``rows`` (flat: archive_no + fields),
        best first; ``exports`` is how many exports the vault ever made (the correction)."""
        types = {name: spec.type for name, spec in self.schema.fields.items()}
        by_no: dict[str, Mapping[str, str]] = {}
        for row in rows:  # a row repeated in the file counts once
            by_no.setdefault(row.get("archive_no", ""), row)
        out: list[Score] = []
        for c in candidates:
            s = Score(c.uid)
            decoys = {no: i for i, no in enumerate(c.decoys)}
            for no, row in by_no.items():
                if no not in c.archives and no not in decoys:
                    continue
                s.rows += 1
                if no in decoys and self._is_decoy(c, decoys[no], no, row):
                    s.decoy_rows += 1
                for f, cell in row.items():
                    if f not in c.fields or f not in types:
                        continue
                    seen = observe(types[f], cell)
                    if seen is not None:
                        s.bits += 1
                        s.agree += seen == self.bit(c.uid, no, f)
                        s.fields.add(f)
            s.p = binomial_tail(s.bits, s.agree) * DECOY_P**s.decoy_rows
            s.confidence = max(0.0, 1.0 - s.p * max(1, exports))
            out.append(s)
        out.sort(key=lambda s: (-s.confidence, s.p, -s.bits))
        return out

    def _is_decoy(self, c: Candidate, index: int, no: str, row: Mapping[str, str]) -> bool:
        groups = {self.schema.fields[f].group for f in c.fields if f in self.schema.fields}
        made = {f: v for g in self.decoy(c.uid, index, no, groups).values() for f, v in g.items()}
        compared = [f for f in made if f in row and self.schema.fields[f].type != "text"]
        return bool(compared) and all(
            canonical(self.schema.fields[f].type, row[f]) == made[f] for f in compared
        )


def _synthetic(spec: FieldSpec, rng: random.Random) -> str | None:
    ftype = spec.type
    if ftype == "name":
        return rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.randint(1, 2)))
    if ftype == "mobile":
        return "1" + rng.choice("35789") + "".join(rng.choice("0123456789") for _ in range(9))
    if ftype == "landline":
        area = rng.choice(_AREAS)
        width = 8 if len(area) == 3 else rng.choice((7, 8))
        return f"{area}-{rng.randint(2, 9)}{rng.randrange(10 ** (width - 1)):0{width - 1}d}"
    if ftype == "id_number":
        birth = f"{rng.randint(1960, 2000)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        first = f"110105{birth}{rng.randrange(1000):03d}"
        return first + id_check_char(first)
    if ftype == "plate":
        tail = "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(5))
        return rng.choice(_PROVINCES) + rng.choice("ABCDEFGH") + tail
    if ftype == "choice":
        return rng.choice(spec.choices) if spec.choices else None
    if ftype == "date":
        return f"{rng.randint(2015, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    return rng.choice(_PLAIN) if rng.random() < 0.5 else None
