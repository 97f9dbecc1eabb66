"""Attachment uploads: read from the request stream straight into chunked encryption.

A form parser that is handed the whole request spools a file part to a
temporary file once it passes a megabyte, and it does so before the route
runs, that is before anybody is authenticated. Here the route authenticates
and decides first, and only then is the body read, piece by piece as it
arrives from the socket, into ``vault.uploads.AttachmentUpload``, which seals
64 KiB chunks and writes them in short transactions. The plaintext is never
on disk and never whole in memory.

Two body formats are accepted:

- ``multipart/form-data`` with a ``file`` part and an optional ``filename``
  part (the route's original shape), parsed with python-multipart's
  low-level streaming ``MultipartParser`` (callbacks, no spooling);
- any other ``type/subtype``: the body is the file itself, its
  ``Content-Type`` is the file's type, and the name comes from the
  ``filename`` query parameter (UTF-8, percent-encoded as usual).

A page's upload form adds small text fields (its CSRF token) before the file
part: a ``FormGate`` names them and checks them when the file part begins,
before its first byte is fed, so a refused form stores nothing.

Sizes are checked while streaming: the file against the attachment limit,
the whole body against that limit plus 64 KiB of multipart framing (413,
nothing stored). The uploader's bytes of the day are counted in the database
as the chunks are written (429, nothing stored).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks
from starlette.requests import ClientDisconnect

from api.errors import ApiProblem
from audit.events import Actor
from vault.errors import VaultError
from vault.uploads import AttachmentUpload, QuotaExceeded, UploadTooLarge, used_today

log = logging.getLogger("archive_vault.api")
FRAMING_BYTES = 64 * 1024  # multipart boundaries and part headers around the file
HEADER_BYTES = 8 * 1024  # all part headers of one part together
NAME_FIELD_BYTES = 4 * 255  # the ``filename`` part: 255 characters of UTF-8
GATE_FIELD_BYTES = 256  # each text field a FormGate names (a CSRF token is 64)


@dataclass(frozen=True)
class FormGate:
    """Text fields that come before the file part, checked before its first byte.

    ``check`` gets the fields seen so far (missing ones absent) and raises to
    refuse; the upload is then aborted and nothing is stored.
    """

    fields: tuple[str, ...]
    check: Callable[[Mapping[str, str]], None]


OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            "The file, streamed: multipart/form-data with a `file` part (and optionally a "
            "`filename` part), or the raw file bytes with their own Content-Type and the name "
            "in the `filename` query parameter. Nothing is read before the caller is "
            "authenticated and allowed."
        ),
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "filename": {"type": "string", "maxLength": 255},
                    },
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _problem(status: int, code: str, detail: str) -> ApiProblem:
    return ApiProblem(status, code, detail)


class _Multipart:
    """State of the streaming multipart parse: which part we are in, and its headers."""

    def __init__(self, upload: AttachmentUpload, gate: FormGate | None = None) -> None:
        self.upload = upload
        self.gate = gate
        self.gated: dict[str, bytearray] = {}
        self.headers: dict[bytes, bytes] = {}
        self.header_bytes = 0
        self.field = bytearray()
        self.value = bytearray()
        self.kind: str | None = None
        self.seen: set[str] = set()
        self.part_filename: str | None = None
        self.part_type = "application/octet-stream"
        self.name_field = bytearray()
        self.ended = False

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": self.header_field,
            "on_header_value": self.header_value,
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
            "on_end": self.end,
        }

    def part_begin(self) -> None:
        self.headers, self.header_bytes, self.kind = {}, 0, None

    def _count(self, n: int) -> None:
        self.header_bytes += n
        if self.header_bytes > HEADER_BYTES:
            raise _problem(400, "malformed-multipart", "a multipart part's headers are too long")

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._count(end - start)
        self.field += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._count(end - start)
        self.value += data[start:end]

    def header_end(self) -> None:
        self.headers[bytes(self.field).strip().lower()] = bytes(self.value).strip()
        self.field.clear()
        self.value.clear()

    def headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition"))
        name = options.get(b"name", b"").decode("latin-1")
        gated = self.gate.fields if self.gate is not None else ()
        if name not in ("file", "filename", *gated):
            raise _problem(
                422, "validation-failed", "an upload has a `file` part and an optional `filename`"
            )
        if name in self.seen:
            raise _problem(422, "validation-failed", f"the `{name}` part is given twice")
        self.seen.add(name)
        self.kind = name
        if name in gated:
            self.gated[name] = bytearray()
        if name == "file":
            if self.gate is not None:
                self.gate.check({k: _text(bytes(v), k) for k, v in self.gated.items()})
            raw = options.get(b"filename")
            if raw is not None:
                self.part_filename = _text(raw, "the file part's filename")
            if b"content-type" in self.headers:
                self.part_type = _text(self.headers[b"content-type"], "the file part's type")

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.kind == "file":
            self.upload.feed(data[start:end])
        elif self.kind == "filename":
            self.name_field += data[start:end]
            if len(self.name_field) > NAME_FIELD_BYTES:
                raise _problem(422, "validation-failed", "filename is longer than 255 characters")
        elif self.kind is not None and self.kind in self.gated:
            value = self.gated[self.kind]
            value += data[start:end]
            if len(value) > GATE_FIELD_BYTES:
                raise _problem(422, "validation-failed", f"the `{self.kind}` part is too long")

    def part_end(self) -> None:
        self.kind = None

    def end(self) -> None:
        self.ended = True

    def result(self) -> tuple[str, str]:
        if not self.ended or "file" not in self.seen:
            raise _problem(
                422, "validation-failed", "the multipart body is incomplete or has no `file` part"
            )
        name = _text(bytes(self.name_field), "filename") if self.name_field else None
        return name or self.part_filename or "attachment", self.part_type


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _problem(422, "validation-failed", f"{what} is not UTF-8") from None


async def _pump(request: Request, upload: AttachmentUpload, write: Any) -> None:
    """Read the body as it arrives; hand each piece on; write sealed chunks as they pile up."""
    limit = upload.cap + FRAMING_BYTES
    seen = 0
    async for piece in request.stream():
        seen += len(piece)
        if seen > limit:
            raise UploadTooLarge(f"the request body is larger than {limit} bytes")
        write(piece)
        if upload.due:
            await run_in_threadpool(upload.flush)


async def receive_attachment(
    request: Request,
    services: Any,
    actor: Actor,
    archive_no: str,
    filename: str | None,
    gate: FormGate | None = None,
) -> dict[str, Any]:
    """Stream the (already authorised) upload into the archive; on any failure store nothing.

    With a ``gate`` only a multipart body is taken, and its gated fields are
    checked before the file part's first byte."""
    mime, options = parse_options_header(request.headers.get("content-type"))
    mime_type = mime.decode("latin-1").lower()
    boundary = options.get(b"boundary")
    multipart = mime_type == "multipart/form-data"
    if multipart and not boundary:
        raise _problem(400, "malformed-multipart", "multipart/form-data needs a boundary")
    if not multipart and ("/" not in mime_type or mime_type.startswith("multipart/")):
        raise _problem(
            415,
            "unsupported-media-type",
            "send multipart/form-data with a `file` part, or the file itself with its "
            "Content-Type and ?filename=",
        )
    if gate is not None and not multipart:
        raise _problem(415, "unsupported-media-type", "this form is sent as multipart/form-data")
    declared_raw = request.headers.get("content-length")
    declared = int(declared_raw) if declared_raw and declared_raw.isdigit() else None
    day = services.clock().date()
    upload = AttachmentUpload(services.store, archive_no, actor=actor, day=day)
    try:
        exact = None if multipart else declared  # a raw body's length is the file's size
        if exact is not None and exact > upload.cap:
            raise UploadTooLarge(f"the attachment is larger than {upload.cap} bytes")
        used = await run_in_threadpool(used_today, services.engine, actor.username, day)
        if used >= upload.quota or (exact is not None and used + exact > upload.quota):
            raise QuotaExceeded(
                f"this upload would pass your quota of {upload.quota} bytes of attachments a "
                f"day ({used} used today); nothing was stored (it starts again at 00:00 UTC)"
            )
        await run_in_threadpool(upload.begin)
        if multipart:
            state = _Multipart(upload, gate)
            assert boundary is not None  # refused above when missing
            parser = MultipartParser(boundary, state.callbacks())
            await _pump(request, upload, parser.write)
            parser.finalize()
            name, content_type = state.result()
            name = filename or name
        else:
            await _pump(request, upload, upload.feed)
            name, content_type = filename or "attachment", mime_type
        return await run_in_threadpool(upload.finish, name, content_type)
    except BaseException as exc:
        reason = _reason(exc)
        denied = isinstance(exc, QuotaExceeded | UploadTooLarge)
        try:
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(functools.partial(upload.abort, reason, denied=denied))
        except Exception as cleanup:  # noqa: BLE001 - the original error is what the caller gets
            # Never str(): it may carry SQL parameters. What is left is ciphertext of an
            # incomplete upload, which is never listed and is purged by housekeeping.
            log.error("could not clean up a refused upload: %s", type(cleanup).__name__)
        if isinstance(exc, MultipartParseError):
            raise _problem(400, "malformed-multipart", "the multipart body is malformed") from None
        if isinstance(exc, ClientDisconnect):
            raise _problem(400, "client-disconnected", "the upload was cut off") from None
        raise


def _reason(exc: BaseException) -> str:
    """Why an upload was refused, for the audit entry (never the content)."""
    if isinstance(exc, VaultError):
        return exc.message
    if isinstance(exc, ApiProblem):
        return exc.detail
    if isinstance(exc, MultipartParseError):
        return "malformed multipart body"
    if isinstance(exc, ClientDisconnect):
        return "the client disconnected"
    return f"upload failed ({type(exc).__name__})"
