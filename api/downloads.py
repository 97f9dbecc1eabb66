"""Response headers for a downloaded attachment: never what the uploader claimed.

An uploaded file is attacker-controlled bytes. Served with the type the
uploader sent (``text/html``, ``image/svg+xml``) under the vault's origin it
would run script there. Only types a browser renders without running anything
are shown inline; everything else is ``application/octet-stream`` and saved as
a file. Every download is sandboxed (``Content-Security-Policy: sandbox``: no
script, no same-origin access even if a browser renders it anyway) and never
sniffed into another type.
"""

from __future__ import annotations

from urllib.parse import quote

from vault.media import OCTET_STREAM, media_essence

# type/subtype → the Content-Type it is served with, inline.
INLINE_TYPES = {
    "image/png": "image/png",
    "image/jpeg": "image/jpeg",
    "application/pdf": "application/pdf",
    "text/plain": "text/plain; charset=utf-8",
}


def download_headers(stored_type: str, filename: str, size: int) -> tuple[str, dict[str, str]]:
    """The media type and headers to stream an attachment with."""
    media = INLINE_TYPES.get(media_essence(stored_type) or "")
    disposition = "inline" if media else "attachment"
    return media or OCTET_STREAM, {
        "Content-Length": str(size),
        "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(filename, safe='')}",
        "Content-Security-Policy": "sandbox",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }
