"""Normalisers, validators and masks for the values users type.

A normaliser turns what a person writes (``+86 138-0013-8000``) into one
canonical form, so that equal values produce equal blind indexes and a typo is
refused at the door instead of being stored. Every failure raises
``InvalidValue`` with a message that names the rule, never the value itself,
because the value may be customer content and messages end up in logs.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import date

__all__ = [
    "FORBIDDEN_IN_TEXT",
    "MASKS",
    "NORMALISERS",
    "InvalidValue",
    "check_text",
    "id_check_char",
]


class InvalidValue(ValueError):
    """A value does not have the shape its field requires (message is content-free)."""


# Characters no free text may hold, wherever it enters (profile fields, reasons,
# interaction text, names, filenames, notes): C0 controls (NUL, ESC, …), DEL, C1
# controls, lone surrogates, and the bidirectional embeddings, overrides and
# isolates (U+202A–U+202E, U+2066–U+2069) that make text display in another order
# than it is stored ("Trojan Source", a filename ending in "fdp.exe" shown as
# "exe.pdf"). Tab and newline are the only controls allowed, and only where a
# field holds several lines.
FORBIDDEN_IN_TEXT = "\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_FORBIDDEN_MULTILINE = re.compile(f"[{FORBIDDEN_IN_TEXT}]")
_FORBIDDEN_ONE_LINE = re.compile(f"[\t\n{FORBIDDEN_IN_TEXT}]")


def check_text(value: str, *, multiline: bool) -> str:
    """Free text with Windows line ends made ``\\n``; raises on a forbidden character.

    One validator for every entry point, so a rule added here holds everywhere.
    The message names the rule, never the character's position or the text.
    """
    value = value.replace("\r\n", "\n")
    if (_FORBIDDEN_MULTILINE if multiline else _FORBIDDEN_ONE_LINE).search(value):
        allowed = "tab and newline are the only ones allowed" if multiline else "one line only"
        raise InvalidValue(
            "must not contain control or bidirectional-override characters "
            f"(U+0000–U+001F, U+007F–U+009F, U+202A–U+202E, U+2066–U+2069; {allowed})"
        )
    return value


_SPACES = re.compile(r"[\s\-\u2010-\u2015\u00b7.()（）]+")


def _nfkc(value: str) -> str:
    return unicodedata.normalize("NFKC", value).strip()


def text(value: str) -> str:
    # NFC, not NFKC: free text keeps its full-width punctuation (，not ,) as typed.
    value = unicodedata.normalize("NFC", value).strip()
    if not value:
        raise InvalidValue("must not be empty")
    return value


def name(value: str) -> str:
    # Chinese names carry no internal spaces; Latin names keep single spaces.
    value = " ".join(_nfkc(value).split())
    if not value:
        raise InvalidValue("must not be empty")
    if re.fullmatch(r"[\u3400-\u9fff\u00b7]+( [\u3400-\u9fff\u00b7]+)*", value):
        value = value.replace(" ", "")
    if any(unicodedata.category(c).startswith(("C", "S")) for c in value):
        raise InvalidValue("a name may hold only letters, spaces and the middle dot")
    return value


def mobile(value: str) -> str:
    digits = _SPACES.sub("", _nfkc(value))
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    if not re.fullmatch(r"1[3-9]\d{9}", digits):
        raise InvalidValue("a mobile number has 11 digits starting with 1 (optionally +86)")
    return digits


def landline(value: str) -> str:
    raw = _nfkc(value)
    ext = ""
    match = re.search(r"(?:转|ext\.?|x|#)\s*(\d{1,6})$", raw, flags=re.IGNORECASE)
    if match:
        ext, raw = match.group(1), raw[: match.start()]
    digits = _SPACES.sub("", raw)
    if digits.startswith("+86"):
        digits = "0" + digits[3:]
    elif digits.startswith("0086"):
        digits = "0" + digits[4:]
    match = re.fullmatch(r"(0(?:10|2\d|[3-9]\d{2}))(\d{7,8})", digits)
    if not match:
        raise InvalidValue("a landline is an area code (3–4 digits starting with 0) and 7–8 digits")
    out = f"{match.group(1)}-{match.group(2)}"
    return f"{out}-{ext}" if ext else out


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def id_check_char(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of a resident ID number."""
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def id_number(value: str) -> str:
    raw = _SPACES.sub("", _nfkc(value)).upper()
    if not re.fullmatch(r"\d{17}[\dX]", raw):
        raise InvalidValue("a resident ID number has 17 digits and a check digit or X")
    try:
        date(int(raw[6:10]), int(raw[10:12]), int(raw[12:14]))
    except ValueError:
        raise InvalidValue("the birth date inside the resident ID number is not a date") from None
    if id_check_char(raw[:17]) != raw[17]:
        raise InvalidValue("the resident ID number's check character (ISO 7064 MOD 11-2) is wrong")
    return raw


_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼使领"


def plate(value: str) -> str:
    raw = _SPACES.sub("", _nfkc(value)).upper()
    if not re.fullmatch(rf"[{_PROVINCES}][A-Z][A-Z0-9]{{4}}[A-Z0-9挂学警港澳]{{1,2}}", raw):
        raise InvalidValue(
            "a licence plate is a province character, a letter and 5 characters (6 for new energy)"
        )
    return raw


def iso_date(value: str) -> str:
    try:
        return date.fromisoformat(_nfkc(value)).isoformat()
    except ValueError:
        raise InvalidValue("a date is written YYYY-MM-DD") from None


NORMALISERS: dict[str, Callable[[str], str]] = {
    "text": text,
    "name": name,
    "mobile": mobile,
    "landline": landline,
    "id_number": id_number,
    "plate": plate,
    "date": iso_date,
}


def _mask_name(value: str) -> str:
    # Masked views keep the surname (DOMAIN: "masked views keep the surname").
    if " " in value:
        first, *_ = value.split(" ")
        return first + " *"
    return value[:1] + "*" * max(1, len(value) - 1)


def _mask_mobile(value: str) -> str:
    return value[:3] + "****" + value[-4:]


def _mask_landline(value: str) -> str:
    area, _, rest = value.partition("-")
    return f"{area}-****{rest[-2:]}" if rest else "****"


def _mask_id(value: str) -> str:
    return value[:3] + "*" * 11 + value[-4:]


def _mask_plate(value: str) -> str:
    return value[:2] + "*" * (len(value) - 3) + value[-1:]


def _mask_redact(value: str) -> str:
    return "***"


MASKS: dict[str, Callable[[str], str]] = {
    "name": _mask_name,
    "mobile": _mask_mobile,
    "landline": _mask_landline,
    "id_number": _mask_id,
    "plate": _mask_plate,
    "redact": _mask_redact,
}
