"""The media type stored with an attachment: what the uploader said, reduced to its essence.

The type an uploader sends is untrusted: it may be malformed, carry parameters
(``charset=…``, ``boundary=…``) or claim ``text/html`` for a script. The store
keeps only the lower-cased ``type/subtype``; what a download may be served as is
decided separately, from an allow-list (``api.downloads``), never echoed.
"""

from __future__ import annotations

import re
from typing import Any

from vault.errors import ValidationFailed

OCTET_STREAM = "application/octet-stream"
MAX_CHARS = 127
# RFC 9110 token characters on each side of the slash.
_ESSENCE = re.compile(r"[a-z0-9!#$&^_.+\-]{1,63}/[a-z0-9!#$&^_.+\-]{1,63}")


def media_essence(raw: Any) -> str | None:
    """``type/subtype`` of a Content-Type value, lower-cased; None when it is not one."""
    if not isinstance(raw, str) or len(raw) > MAX_CHARS:
        return None
    essence = raw.split(";", 1)[0].strip().lower()
    return essence if _ESSENCE.fullmatch(essence) else None


def stored_media_type(raw: Any) -> str:
    """What the store records for an upload's Content-Type (parameters dropped)."""
    essence = media_essence(raw)
    if essence is None:
        raise ValidationFailed("content type must look like type/subtype")
    return essence
