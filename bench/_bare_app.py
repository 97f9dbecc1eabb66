"""The baseline for bench/api.py: a bare FastAPI endpoint returning a same-sized JSON body."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI

BODY: Any = json.loads(Path(os.environ["BENCH_BODY_FILE"]).read_text(encoding="utf-8"))
app = FastAPI()


@app.get("/customers/{archive_no}")
def read(archive_no: str) -> Any:
    return BODY
