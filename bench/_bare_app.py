"""The baseline for bench/api.py: a bare FastAPI endpoint returning the vault's JSON body.

The server starts while the vault is still being filled, so its start-up
overlaps the vault's; the body, known only once the vault serves, then comes
over the Unix socket named in ``BENCH_BODY_SOCKET``, and never lands on disk.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from fastapi import FastAPI


def _body() -> Any:
    chunks = []
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(600)
            conn.connect(os.environ["BENCH_BODY_SOCKET"])
            while chunk := conn.recv(65536):
                chunks.append(chunk)
    except OSError as exc:  # the benchmark stopped before the vault served
        raise SystemExit(f"bench/_bare_app.py: no body from bench/api.py ({exc})") from None
    return json.loads(b"".join(chunks))


BODY: Any = _body()
app = FastAPI()


@app.get("/customers/{archive_no}")
def read(archive_no: str) -> Any:
    return BODY
