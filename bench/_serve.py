"""Starts one side of bench/api.py: uvicorn exactly as ``archive-vault serve`` runs it.

    python bench/_serve.py PORT WORKERS APP [--factory] [--app-dir DIR]

Both sides go through here so that they differ only in the application.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvicorn

from api.serving import HTTP_PROTOCOL, WORKER_HEALTHCHECK_SECONDS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("workers", type=int)
    parser.add_argument("app")
    parser.add_argument("--factory", action="store_true")
    parser.add_argument("--app-dir", default=None)
    args = parser.parse_args()
    if args.app_dir:
        sys.path.insert(0, args.app_dir)
    uvicorn.run(
        args.app,
        factory=args.factory,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        http=HTTP_PROTOCOL,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
    )


if __name__ == "__main__":
    main()
