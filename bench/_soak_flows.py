"""The soak's stateful flows, driven by one Python thread at a realistic pace.

Three flows, taken in turn, each by the demo vault's own cast and chains:

* view: li.na (销售一部) asks to see one of zhang.wei's clients; her department
  head (head.sales1) signs, then an information officer (chen.jing and huang.min
  in turn); li.na reads the granted group.
* loan: the same chain for a loan of one archive; li.na finds the line in the
  loan register, confirms it, reads, and returns it (which ends the access).
* export: liu.yang (销售二部) asks for a copy of two of his own clients; the
  information supervisor (zhao.lei) approves; liu.yang exports it as JSON.

Every call is timed here, by step. What was read and exported (actor and
archive numbers, request ids: never content) is recorded so the audit check can
find each entry. A flow stops at its first answer that is not 2xx, and the
failure is recorded (with the problem's type, never its text).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

REQUESTER, HEAD, OFFICERS = "li.na", "head.sales1", ("chen.jing", "huang.min")
EXPORTER, COPY_APPROVER = "liu.yang", "zhao.lei"
READERS, EXPORTERS = (REQUESTER,), (EXPORTER,)
FLOW_USERS = (REQUESTER, HEAD, *OFFICERS, EXPORTER, COPY_APPROVER)
GROUPS = ["contact"]
KINDS = ("view", "loan", "export")


class FlowFailed(Exception):
    """A step answered something other than 2xx, or not at all."""


@dataclass(frozen=True)
class Call:
    step: str
    status: int  # 0: no answer (a socket error or a timeout)
    seconds: float


@dataclass(frozen=True)
class Exported:
    actor: str
    request: str
    archives: tuple[str, ...]


@dataclass
class Record:
    """What the flows did, for the table and for the audit check."""

    calls: list[Call] = field(default_factory=list)
    reads: list[tuple[str, str]] = field(default_factory=list)  # (actor, archive_no)
    exports: list[Exported] = field(default_factory=list)
    done: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


class Flows:
    """Runs the flows against ``base`` until a deadline, one every ``interval`` seconds."""

    def __init__(
        self,
        base: str,
        password: str,
        *,
        view_pool: list[str],
        copy_pool: list[str],
        interval: float,
        token_seconds: float,
    ) -> None:
        if not base.startswith("http://127.0.0.1:"):
            raise ValueError(f"load goes to 127.0.0.1 only, not {base}")
        if not view_pool or len(copy_pool) < 2:
            raise ValueError("the flows need archives of zhang.wei and at least two of liu.yang")
        self.client = httpx.Client(base_url=base, timeout=30)
        self.password = password
        self.view_pool, self.copy_pool = view_pool, copy_pool
        self.interval, self.token_seconds = interval, token_seconds
        self.record = Record()
        self._tokens: dict[str, tuple[float, dict[str, str]]] = {}
        self._n = 0

    def close(self) -> None:
        self.client.close()

    # -- one call --------------------------------------------------------------

    def _call(self, step: str, method: str, path: str, user: str | None, **kw: Any) -> Any:
        headers = self._headers(user) if user else {}
        t0 = time.perf_counter()
        try:
            r = self.client.request(method, path, headers=headers, **kw)
        except httpx.HTTPError as exc:
            self.record.calls.append(Call(step, 0, time.perf_counter() - t0))
            raise FlowFailed(f"{step}: no answer ({type(exc).__name__})") from None
        self.record.calls.append(Call(step, r.status_code, time.perf_counter() - t0))
        if not 200 <= r.status_code < 300:
            kind = ""
            if r.headers.get("content-type", "").startswith("application/problem+json"):
                kind = str(r.json().get("type", ""))
            raise FlowFailed(f"{step}: {r.status_code} {kind}".rstrip())
        return r.json()

    def _headers(self, user: str) -> dict[str, str]:
        issued, headers = self._tokens.get(user, (0.0, {}))
        if not headers or time.monotonic() - issued > self.token_seconds / 2:
            body = self._call(
                "sign-in", "POST", "/auth/token", None,
                data={"username": user, "password": self.password},
            )  # fmt: skip
            headers = {"Authorization": f"Bearer {body['access_token']}"}
            self._tokens[user] = (time.monotonic(), headers)
        return headers

    # -- the flows ---------------------------------------------------------------

    def _next(self, pool: list[str], count: int = 1) -> list[str]:
        picked = [pool[(self._n + i) % len(pool)] for i in range(count)]
        self._n += count
        return picked

    def _file(self, user: str, **body: Any) -> str:
        return str(self._call("file request", "POST", "/requests", user, json=body)["id"])

    def _approve(self, user: str, uid: str) -> dict[str, Any]:
        out: dict[str, Any] = self._call(
            "approve", "POST", f"/requests/{uid}/approve", user, json={}
        )
        return out

    def _read(self, user: str, archive_no: str) -> None:
        groups = ",".join(GROUPS)
        self._call("read (granted)", "GET", f"/customers/{archive_no}?groups={groups}", user)
        self.record.reads.append((user, archive_no))

    def _officer(self) -> str:
        return OFFICERS[(self.record.done["view"] + self.record.done["loan"]) % len(OFFICERS)]

    def view(self) -> None:
        (no,) = self._next(self.view_pool)
        uid = self._file(
            REQUESTER, kind="view", archives=[no], groups=GROUPS,
            purpose="customer_service", reason="客户来电，需回电",
        )  # fmt: skip
        self._approve(HEAD, uid)
        if self._approve(self._officer(), uid)["state"] != "approved":
            raise FlowFailed("view: not approved after its chain")
        self._read(REQUESTER, no)

    def loan(self) -> None:
        (no,) = self._next(self.view_pool)
        uid = self._file(
            REQUESTER, kind="loan", archives=[no], groups=GROUPS, purpose="contract_follow_up",
            reason="签约", hours=24, material="客户档案复印件", copies=1,
        )  # fmt: skip
        self._approve(HEAD, uid)
        if self._approve(self._officer(), uid)["state"] != "approved":
            raise FlowFailed("loan: not approved after its chain")
        register = self._call("loan register", "GET", "/loans?open_only=true", REQUESTER)
        lines = [
            e["id"]
            for e in register["items"]
            if e["archives"] == [no] and e["confirmed_at"] is None and e["returned_at"] is None
        ]
        if not lines:
            raise FlowFailed("loan: no register line for the approved loan")
        self._call("loan confirm", "POST", f"/loans/{lines[0]}/confirm", REQUESTER)
        self._read(REQUESTER, no)
        self._call("loan return", "POST", f"/loans/{lines[0]}/return", REQUESTER)

    def export(self) -> None:
        numbers = self._next(self.copy_pool, 2)
        uid = self._file(
            EXPORTER, kind="copy", archives=numbers, groups=GROUPS,
            purpose="contract_follow_up", reason="合同附件", format="json",
        )  # fmt: skip
        if self._approve(COPY_APPROVER, uid)["state"] != "approved":
            raise FlowFailed("export: not approved after its chain")
        self._call("export", "POST", "/exports", EXPORTER, json={"request": uid})
        self.record.exports.append(Exported(EXPORTER, uid, tuple(sorted(numbers))))

    def run(self, seconds: float, stop: threading.Event) -> None:
        """Flows in turn, one starting every ``interval`` s, until ``seconds`` have passed."""
        start = time.monotonic()
        deadline = start + seconds
        for n in range(1_000_000):
            at = start + n * self.interval
            if stop.wait(max(0.0, at - time.monotonic())) or time.monotonic() >= deadline:
                return
            kind = KINDS[n % len(KINDS)]
            try:
                getattr(self, kind)()
                self.record.done[kind] += 1
            except FlowFailed as exc:
                self.record.failures.append(f"{kind}: {exc}")
