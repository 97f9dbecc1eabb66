"""Two equivalent renderings of one stored value, for export fingerprints.

An export may write a value in either of two forms that mean exactly the same
thing to a reader and to the vault's own normalisers (``vault.formats``): which
one it wrote is one bit, chosen by a keyed hash elsewhere
(``policies.fingerprint``). This module knows only the forms, and reads back
which form a cell holds (``observe``: 0, 1, or None when the cell is in neither).

The forms are picked to survive a spreadsheet opening the CSV and saving it
again: neither form of any pair is a pure number, a date, or depends on leading
or trailing whitespace, so a spreadsheet keeps both as text, and re-quoting or
changed line ends do not touch them.

- mobile ``13800138000``: ``138 0013 8000`` | ``138-0013-8000``
- landline ``010-12345678``: ``010-12345678`` | ``010 12345678``
- plate ``京A12345``: ``京A12345`` | ``京A·12345`` (the usual middle dot)
- free text holding digits and letters: half-width digits | full-width digits
  (``建国路88号`` | ``建国路８８号``); only when the text has something besides
  digits and date or number signs, so no spreadsheet reads it as a number or a
  date (``3月5日`` is left alone).

Names, choices, resident ID numbers (pure digits: spreadsheets round them) and
dates (spreadsheets reformat them) have no safe pair and carry no bit.
"""

from __future__ import annotations

import re

__all__ = ["PAIRED", "canonical", "observe", "pair", "render"]

PAIRED = frozenset({"mobile", "landline", "plate", "text"})  # types that may have two forms

_HALF = "0123456789"
_FULL = "０１２３４５６７８９"
_TO_FULL = str.maketrans(_HALF, _FULL)
_TO_HALF = str.maketrans(_FULL, _HALF)
_MOBILE = re.compile(r"1[3-9]\d{9}")
_MOBILE_FORMS = (re.compile(r"(\d{3}) (\d{4}) (\d{4})"), re.compile(r"(\d{3})-(\d{4})-(\d{4})"))
_LANDLINE = re.compile(r"(0\d{2,3})-(\d{7,8})")
_LANDLINE_1 = re.compile(r"(0\d{2,3}) (\d{7,8})")
_PLATE = re.compile(r"([^\x00-\x7f])([A-Z])([A-Z0-9]{5,6})")
_PLATE_1 = re.compile(r"([^\x00-\x7f])([A-Z])·([A-Z0-9]{5,6})")
# Text a spreadsheet might take for a number, a date or a time: left alone.
_NUMBERISH = re.compile(r"[\d０-９\s年月日号號时時分秒点:/.\-,，%+＋¥$元万亿千百]*")


_DIGIT = re.compile(r"[0-9０-９]")
_HALF_RE = re.compile(r"[0-9]")
_FULL_RE = re.compile(r"[０-９]")


def _text_eligible(value: str) -> bool:
    return _DIGIT.search(value) is not None and not _NUMBERISH.fullmatch(value.strip())


def pair(ftype: str, value: str) -> tuple[str, str] | None:
    """Both forms of ``value``, or None when it has no pair (most cells)."""
    if ftype not in PAIRED:
        return None
    forms = (render(ftype, value, 0), render(ftype, value, 1))
    return forms if forms[0] != forms[1] else None


def render(ftype: str, value: str, bit: int) -> str:
    """``value`` (as stored, normalised) in form ``bit``; unchanged when it has no pair."""
    if ftype == "mobile" and _MOBILE.fullmatch(value):
        return f"{value[:3]}{' -'[bit]}{value[3:7]}{' -'[bit]}{value[7:]}"
    if ftype == "landline" and _LANDLINE.fullmatch(value):
        return value if bit == 0 else value.replace("-", " ", 1)
    if ftype == "plate" and _PLATE.fullmatch(value):
        return value if bit == 0 else f"{value[:2]}·{value[2:]}"
    if ftype == "text" and _text_eligible(value):
        return value.translate(_TO_HALF if bit == 0 else _TO_FULL)
    return value


def observe(ftype: str, cell: str) -> int | None:
    """Which form a leaked cell is in: 0, 1, or None (neither, or no pair for the type)."""
    if ftype == "mobile":
        for bit, form in enumerate(_MOBILE_FORMS):
            if form.fullmatch(cell.strip()):
                return bit
        return None
    if ftype == "landline":
        cell = cell.strip()
        if _LANDLINE.fullmatch(cell):
            return 0
        return 1 if _LANDLINE_1.fullmatch(cell) else None
    if ftype == "plate":
        cell = cell.strip()
        if _PLATE.fullmatch(cell):
            return 0
        return 1 if _PLATE_1.fullmatch(cell) else None
    if ftype == "text" and _text_eligible(cell):
        half = _HALF_RE.search(cell) is not None
        full = _FULL_RE.search(cell) is not None
        if half != full:  # all of one width; mixed text was not written by an export
            return 1 if full else 0
    return None


def canonical(ftype: str, cell: str) -> str:
    """The stored form of a cell in either rendering (to compare decoy rows)."""
    cell = cell.strip()
    if ftype in ("mobile", "landline", "plate"):
        if ftype == "mobile":
            return re.sub(r"[ \-]", "", cell)
        if ftype == "landline":
            return cell.replace(" ", "-", 1) if _LANDLINE_1.fullmatch(cell) else cell
        return cell.replace("·", "")
    return cell.translate(_TO_HALF)
