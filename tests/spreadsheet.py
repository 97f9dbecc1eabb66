"""What a spreadsheet does to a CSV it opens and saves again, for fingerprint tests.

Modelled on what Excel and LibreOffice do with default settings: cells are
trimmed; a cell that reads as a number becomes one (leading zeros dropped, more
than 15 significant digits rounded and written in scientific notation, as
Excel's "General" format does); a cell that reads as a date is rewritten in the
locale's short form; line ends become CRLF; cells are re-quoted only where a
comma, quote or line break requires it; a UTF-8 BOM is written or the text is
saved as GB 18030 (a Chinese Excel's "CSV").
"""

from __future__ import annotations

import csv
import io
import re
from datetime import date

_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")
_DATE = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})")


def _cell(value: str) -> str:
    value = value.strip()
    if _NUMBER.fullmatch(value):
        number = float(value)
        digits = len(value.lstrip("+-").replace(".", "").lstrip("0"))
        if digits > 15 or abs(number) >= 1e11:
            return f"{number:.5E}"
        return f"{number:g}" if "." in value else str(int(number))
    if m := _DATE.fullmatch(value):
        try:
            d = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            return value
        return f"{d.year}/{d.month}/{d.day}"
    return value


def round_trip(text: str, *, encoding: str = "utf-8-sig") -> bytes:
    """The CSV ``text`` after a spreadsheet opened it and saved it as CSV."""
    rows = list(csv.reader(io.StringIO(text, newline="")))
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    for row in rows:
        writer.writerow([_cell(c).replace("\r\n", "\n").replace("\n", "\r\n") for c in row])
    return out.getvalue().encode(encoding)
