"""The baseline for bench/api.py: a bare FastAPI endpoint returning the vault's JSON body.

The body arrives in the environment (``BENCH_BODY``) rather than in a file, so the
decrypted sample never lands on disk.
"""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import FastAPI

BODY: Any = json.loads(os.environ["BENCH_BODY"])
app = FastAPI()


@app.get("/customers/{archive_no}")
def read(archive_no: str) -> Any:
    return BODY
