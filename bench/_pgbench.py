"""pgbench as the baseline of ``bench/appends.py``: the script, the command and its report.

pgbench is PostgreSQL's own load generator, written in C with one connection per
client and nothing between the client and the server but libpq. Its single-row
durable INSERT, from as many clients as the vault has writers, is the rate the
server and the disk allow for a commit of about the size of an audit entry;
an audit append is measured against it.

The report's throughput line changed over PostgreSQL versions, and the parser
reads every form:

* 14 and later: ``tps = 812.3 (without initial connection time)``;
* 13 and earlier: ``tps = 790.1 (including connections establishing)`` and
  ``tps = 812.3 (excluding connections establishing)``;
* a bare ``tps = 812.3``.

The figure without connection setup is preferred: the vault's writers connect
before their timed phase too.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

TABLE = "bench_pgbench_rows"
ROW_BYTES = 300

_TPS = re.compile(r"^\s*tps\s*=\s*([0-9]+(?:\.[0-9]+)?)\s*(?:\((.*)\))?\s*$", re.MULTILINE)
_PROCESSED = re.compile(r"number of transactions actually processed:\s*([0-9]+)")
_FAILED = re.compile(r"number of failed transactions:\s*([0-9]+)")
_LATENCY = re.compile(r"latency average\s*=\s*([0-9]+(?:\.[0-9]+)?)\s*ms")
# Most preferred first: the rate without connection setup, in every version's words.
_PREFERENCE = ("without initial connection", "excluding connection", "", "including connection")
_OTHER = "other"  # a note no version above prints: used only when nothing else was found


class PgbenchError(RuntimeError):
    """pgbench could not run, failed, or printed no throughput line."""


@dataclass(frozen=True)
class PgbenchResult:
    tps: float
    transactions: int | None
    failed: int | None
    latency_avg_ms: float | None


def parse_pgbench(output: str) -> PgbenchResult:
    """The throughput (and what else the report gives) from pgbench's standard output."""
    found: dict[str, float] = {}
    for match in _TPS.finditer(output):
        note = (match.group(2) or "").strip().lower()
        kind = next(
            (k for k in _PREFERENCE if (k and note.startswith(k)) or (not k and not note)), _OTHER
        )
        found.setdefault(kind, float(match.group(1)))
    tps = next((found[kind] for kind in (*_PREFERENCE, _OTHER) if kind in found), None)
    if tps is None:
        raise PgbenchError("pgbench printed no 'tps = ...' line")

    def number(pattern: re.Pattern[str]) -> str | None:
        match = pattern.search(output)
        return None if match is None else match.group(1)

    processed, failed, latency = number(_PROCESSED), number(_FAILED), number(_LATENCY)
    return PgbenchResult(
        tps=tps,
        transactions=None if processed is None else int(processed),
        failed=None if failed is None else int(failed),
        latency_avg_ms=None if latency is None else float(latency),
    )


def create_sql() -> str:
    """The baseline's table: a bigserial key, a 300-byte text and a timestamp."""
    return (
        f"CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, body text NOT NULL, "
        "at timestamptz NOT NULL)"
    )


def write_script(directory: Path) -> Path:
    """One INSERT of a fresh-looking 300-byte row per transaction (no customer content)."""
    body = secrets.token_hex(ROW_BYTES // 2)
    path = directory / "insert.sql"
    path.write_text(f"INSERT INTO {TABLE} (body, at) VALUES ('{body}', now());\n")
    return path


@dataclass(frozen=True)
class Target:
    """Where pgbench connects: libpq's parameters, the password kept out of its arguments."""

    database: str
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = None


def run_pgbench(
    target: Target,
    script: Path,
    seconds: int,
    *,
    clients: int = 8,
    threads: int = 2,
    binary: str | None = None,
) -> PgbenchResult:
    """Run ``pgbench -n -c clients -j threads -T seconds -f script`` and parse its report."""
    exe = binary or shutil.which("pgbench") or "/usr/bin/pgbench"
    cmd = [exe, "-n", "-c", str(clients), "-j", str(threads), "-T", str(seconds)]
    cmd += ["-f", str(script)]
    if target.host:
        cmd += ["-h", target.host]
    if target.port:
        cmd += ["-p", str(target.port)]
    if target.user:
        cmd += ["-U", target.user]
    cmd.append(target.database)
    env = dict(os.environ)
    if target.password:
        env["PGPASSWORD"] = target.password
    try:
        done = subprocess.run(  # fixed arguments, no shell
            cmd, capture_output=True, text=True, env=env, timeout=seconds + 60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PgbenchError(f"pgbench could not run ({type(exc).__name__})") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise PgbenchError(f"pgbench exited with {done.returncode}: {last}")
    return parse_pgbench(done.stdout)
