"""wrk as the load generator of bench/api.py: its Lua script, one bounded round, its report.

A Python client spends about as much CPU per request as the bare FastAPI server
it measures, and on two cores the two compete: the baseline is capped by the
client, and the vault/bare ratio looks better than it is. wrk is C, sends from
a fixed number of keep-alive connections for a fixed time, and its cost per
request is a small fraction of either server's.

The figures come from the script's ``done()``, which prints one JSON line after
a marker: wrk's human-readable summary changes units with magnitude (``1.02k``,
``850.00us``), the JSON does not. Every response that is not 2xx is counted by
the script itself (wrk's own counter only sees status ≥ 400), and socket errors
come from wrk's summary, so a round that failed cannot pass for a slow one.
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

MARKER = "BENCH_WRK_JSON "
TOKEN_ENV = "BENCH_TOKEN"
THREADS = 2
MISSING = (
    "wrk not found: apt-get install wrk; falling back to the Python client, "
    "which caps the baseline on 2 cores"
)


@dataclass(frozen=True)
class Round:
    """One side's round: what was served, how fast, and what went wrong."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    socket_errors: int  # connect, read, write and timeouts
    non_2xx: int
    client_cpu_s: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def failures(self) -> int:
        return self.socket_errors + self.non_2xx


def find_wrk(stderr: TextIO | None = None) -> str | None:
    """wrk's path, or None after saying on stderr that the Python client takes over."""
    path = shutil.which("wrk")
    if path is None:
        print(MISSING, file=stderr or sys.stderr)
    return path


def lua_string(text: str) -> str:
    """A Lua string literal: printable ASCII as is, every other byte as a decimal escape."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if 0x20 <= byte < 0x7F and char not in '"\\':
            out.append(char)
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def lua_script(paths: Sequence[str], threads: int = THREADS) -> str:
    """The wrk script: round-robin over ``paths`` with the bearer token from the environment.

    Each thread starts at its own share of the list, so the threads do not read
    the same archive at the same moment, shifted by the number given after
    wrk's ``--``, so that a round goes on where the previous one stopped rather
    than reading the first archives again. The token is read from
    ``BENCH_TOKEN`` rather than written into the script or wrk's command line.
    """
    if not paths:
        raise ValueError("no paths to request")
    listed = ",\n".join(f"  {lua_string(p)}" for p in paths)
    return f"""-- bench/api.py's load: written by bench/_wrk.py for one run, then deleted.
local paths = {{
{listed}
}}
local threads = {{}}
local started = 0

function setup(thread)
  thread:set("start", math.floor(started * #paths / {threads}))
  started = started + 1
  table.insert(threads, thread)
end

function init(args)
  local token = os.getenv("{TOKEN_ENV}")
  if token == nil or token == "" then
    error("{TOKEN_ENV} is not set")
  end
  local headers = {{["Authorization"] = "Bearer " .. token}}
  prepared = {{}}
  for i, path in ipairs(paths) do
    prepared[i] = wrk.format("GET", path, headers)
  end
  at = (tonumber(args[1] or "0") + (start or 0)) % #prepared
  non_2xx = 0
end

function request()
  at = at % #prepared + 1
  return prepared[at]
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non_2xx = non_2xx + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non_2xx") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    '{MARKER}{{"requests": %d, "duration_us": %d, "p50_us": %.1f, "p99_us": %.1f, '
      .. '"connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d, '
      .. '"non_2xx": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.timeout, e.status, bad))
end
"""


_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def parse(stdout: str) -> Round:
    """The round in wrk's output, from the script's JSON line.

    wrk's own "Socket errors" and "Non-2xx or 3xx" lines are read as well and
    the larger count kept, so a failure shows even if the two ever disagree.
    """
    lines = [line for line in stdout.splitlines() if line.startswith(MARKER)]
    if len(lines) != 1:
        raise ValueError(f"expected one {MARKER.strip()} line in wrk's output, found {len(lines)}")
    data = json.loads(lines[0][len(MARKER) :])
    seconds = data["duration_us"] / 1e6
    socket_errors = sum(data[k] for k in ("connect", "read", "write", "timeout"))
    non_2xx = max(data["non_2xx"], data["status"])
    if match := _SOCKET.search(stdout):
        socket_errors = max(socket_errors, sum(int(n) for n in match.groups()))
    if match := _NON_2XX.search(stdout):
        non_2xx = max(non_2xx, int(match.group(1)))
    if data["requests"] < 0 or seconds <= 0:
        raise ValueError(f"wrk reported {data['requests']} requests in {seconds} s")
    return Round(
        requests=int(data["requests"]),
        seconds=seconds,
        p50_ms=data["p50_us"] / 1e3,
        p99_ms=data["p99_us"] / 1e3,
        socket_errors=socket_errors,
        non_2xx=non_2xx,
    )


def command(
    wrk: str,
    base: str,
    seconds: float,
    start: int = 0,
    *,
    script: Path,
    connections: int,
    threads: int = THREADS,
    timeout_s: float = 5,
) -> list[str]:
    """wrk's command line for one bounded run against ``base`` (127.0.0.1 only).

    ``start`` is handed to the script after ``--`` (where in its list to begin).
    """
    if not base.startswith("http://127.0.0.1:"):
        raise ValueError(f"load goes to 127.0.0.1 only, not {base}")
    return [
        wrk,
        "--latency",
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={max(1, round(seconds))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        f"--script={script}",
        base + "/",
        "--",
        str(start),
    ]


def run(
    wrk: str,
    base: str,
    seconds: float,
    start: int = 0,
    *,
    script: Path,
    connections: int,
    env: dict[str, str],
    threads: int = THREADS,
) -> Round:
    """One bounded round against ``base`` (127.0.0.1 only): ``seconds`` long, then wrk exits.

    ``start`` shifts where in the script's list of paths the round begins.
    """
    argv = command(
        wrk, base, seconds, start, script=script, connections=connections, threads=threads
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        argv,
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=False,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr.strip()[-500:]}")
    try:
        measured = parse(done.stdout)
    except (ValueError, KeyError) as exc:
        raise RuntimeError(f"unreadable wrk output ({exc}): {done.stdout[-500:]}") from exc
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return replace(measured, client_cpu_s=cpu)
