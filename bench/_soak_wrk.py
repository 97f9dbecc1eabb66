"""The soak's stateless kinds: one wrk process per kind, all running at once.

Each kind (reads, searches, list pages, logins) gets its own Lua script and
connection count, so wrk reports it apart: requests, req/s, p50 and p99, and
what was not 2xx. The script counts statuses itself, 5xx and 429 apart from the
rest (wrk's own counter sees only status >= 400 and lumps them together): a
login refused by the throttle is not a server error, and is reported as such.

Nothing secret or personal is written into a script: bearer tokens come from
``BENCH_TOKENS`` and request bodies (search values, sign-in forms) from
``BENCH_BODIES`` in wrk's environment; the script holds methods, paths and
indexes into those two lists. A kind may pause between requests on each
connection (wrk's ``delay()``), which sets its rate where no connection should
send as fast as it can (nobody signs in a thousand times a second).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bench import _wrk

TOKENS_ENV = "BENCH_TOKENS"
BODIES_ENV = "BENCH_BODIES"


@dataclass(frozen=True)
class Item:
    """One request of a kind's cycle: ``token`` and ``body`` index the environment's lists
    (1-based, Lua's way; 0 for none)."""

    method: str
    path: str
    token: int = 0
    body: int = 0


@dataclass
class Kind:
    """One wrk-driven kind of request and how much of the load it gets."""

    name: str
    items: list[Item]
    connections: int
    pause_ms: int = 0
    content_type: str = "application/json"
    tokens: list[str] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)

    @property
    def threads(self) -> int:
        return min(2, self.connections)


@dataclass(frozen=True)
class Counted:
    """A kind's wrk report, with the statuses the script counted apart."""

    round: _wrk.Round
    status_5xx: int
    status_429: int

    @property
    def other_non_2xx(self) -> int:
        return max(0, self.round.non_2xx - self.status_5xx - self.status_429)

    @property
    def ok_2xx(self) -> int:
        return max(0, self.round.requests - self.round.non_2xx)


def lua_script(kind: Kind) -> str:
    """The kind's wrk script: round-robin over its items, each thread from its own share."""
    if not kind.items:
        raise ValueError(f"{kind.name}: no requests to send")
    rows = ",\n".join(
        f"  {{{_wrk.lua_string(i.method)}, {_wrk.lua_string(i.path)}, {i.token}, {i.body}}}"
        for i in kind.items
    )
    pause = f"\nfunction delay()\n  return {int(kind.pause_ms)}\nend\n" if kind.pause_ms > 0 else ""
    return f"""-- bench/soak.py's {kind.name} load: written for one run, then deleted.
local items = {{
{rows}
}}
local content_type = {_wrk.lua_string(kind.content_type)}
local threads = {{}}
local started = 0

local function split(text, sep)
  local out = {{}}
  for piece in string.gmatch(text or "", "([^" .. sep .. "]+)") do
    table.insert(out, piece)
  end
  return out
end

function setup(thread)
  thread:set("start", math.floor(started * #items / {kind.threads}))
  started = started + 1
  table.insert(threads, thread)
end

function init(args)
  local tokens = split(os.getenv("{TOKENS_ENV}"), " ")
  local bodies = split(os.getenv("{BODIES_ENV}"), "\\n")
  prepared = {{}}
  for i, item in ipairs(items) do
    local headers = {{}}
    local body = nil
    if item[3] > 0 then
      if tokens[item[3]] == nil then error("{TOKENS_ENV} lacks token " .. item[3]) end
      headers["Authorization"] = "Bearer " .. tokens[item[3]]
    end
    if item[4] > 0 then
      body = bodies[item[4]]
      if body == nil then error("{BODIES_ENV} lacks body " .. item[4]) end
      headers["Content-Type"] = content_type
    end
    prepared[i] = wrk.format(item[1], item[2], headers, body)
  end
  at = (tonumber(args[1] or "0") + (start or 0)) % #prepared
  non_2xx = 0
  s5xx = 0
  s429 = 0
end
{pause}
function request()
  at = at % #prepared + 1
  return prepared[at]
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non_2xx = non_2xx + 1
  end
  if status >= 500 then
    s5xx = s5xx + 1
  elseif status == 429 then
    s429 = s429 + 1
  end
end

function done(summary, latency, requests)
  local bad, e5, e429 = 0, 0, 0
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non_2xx") or 0)
    e5 = e5 + (thread:get("s5xx") or 0)
    e429 = e429 + (thread:get("s429") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    '{_wrk.MARKER}{{"requests": %d, "duration_us": %d, "p50_us": %.1f, "p99_us": %.1f, '
      .. '"connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d, '
      .. '"non_2xx": %d, "s5xx": %d, "s429": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.timeout, e.status, bad, e5, e429))
end
"""


def parse(stdout: str) -> Counted:
    """wrk's report of one kind (``bench._wrk.parse``) and the script's 5xx and 429 counts."""
    measured = _wrk.parse(stdout)
    line = next(x for x in stdout.splitlines() if x.startswith(_wrk.MARKER))
    data = json.loads(line[len(_wrk.MARKER) :])
    return Counted(measured, int(data["s5xx"]), int(data["s429"]))


class Running:
    """The kinds' wrk processes, started together and read when they exit."""

    def __init__(self, wrk: str, base: str, seconds: float, workdir: Path) -> None:
        self.wrk, self.base, self.seconds, self.workdir = wrk, base, seconds, workdir
        self.procs: dict[str, subprocess.Popen[str]] = {}

    def start(self, kind: Kind) -> None:
        script = self.workdir / f"{kind.name}.lua"
        script.write_text(lua_script(kind), encoding="utf-8")
        env = {
            **os.environ,
            TOKENS_ENV: " ".join(kind.tokens),
            BODIES_ENV: "\n".join(kind.bodies),
        }
        argv = _wrk.command(
            self.wrk,
            self.base,
            self.seconds,
            script=script,
            connections=kind.connections,
            threads=kind.threads,
            timeout_s=10,
        )
        self.procs[kind.name] = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def results(self) -> dict[str, Counted]:
        """Each kind's figures once its wrk exited (bounded: its duration plus a minute)."""
        out: dict[str, Counted] = {}
        for name, proc in self.procs.items():
            try:
                stdout, stderr = proc.communicate(timeout=self.seconds + 60)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, stderr = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"wrk ({name}) exited with {proc.returncode}: {stderr[-500:]}")
            try:
                out[name] = parse(stdout)
            except (ValueError, KeyError, StopIteration) as exc:
                raise RuntimeError(f"unreadable wrk output for {name} ({exc})") from exc
        return out

    def kill(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
