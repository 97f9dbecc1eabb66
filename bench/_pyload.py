"""The Python load generator bench/api.py falls back on when wrk is not installed.

It drives the same load as the wrk script (keep-alive connections, round-robin
over the same paths, a fixed time) and reports a ``Round`` alike, but its own
CPU per request is about a bare FastAPI server's: on two cores it caps the
baseline, so its ratios flatter the vault and are marked as such.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Sequence

import httpx

from bench._wrk import Round


def run(
    base: str,
    seconds: float,
    start: int = 0,
    *,
    paths: Sequence[str],
    token: str,
    connections: int,
) -> Round:
    """One round of ``seconds`` from ``connections`` threads, one keep-alive client each.

    As in the wrk script, each thread starts at its own share of ``paths``,
    shifted by ``start``.
    """
    if not base.startswith("http://127.0.0.1:"):
        raise ValueError(f"load goes to 127.0.0.1 only, not {base}")
    latencies: list[float] = []
    counts = {"non_2xx": 0, "socket_errors": 0}
    lock = threading.Lock()
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.perf_counter() + seconds

    def worker(index: int) -> None:
        mine: list[float] = []
        bad = broken = 0
        at = start + index * len(paths) // connections - 1
        with httpx.Client(base_url=base, headers=headers, timeout=5) as client:
            while time.perf_counter() < deadline:
                at = (at + 1) % len(paths)
                t0 = time.perf_counter()
                try:
                    status = client.get(paths[at]).status_code
                except httpx.TransportError:
                    broken += 1
                    continue
                mine.append(time.perf_counter() - t0)
                bad += not 200 <= status < 300
        with lock:
            latencies.extend(mine)
            counts["non_2xx"] += bad
            counts["socket_errors"] += broken

    cpu0, t0 = time.process_time(), time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    centiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return Round(
        requests=len(latencies),
        seconds=elapsed,
        p50_ms=centiles[49] * 1e3,
        p99_ms=centiles[98] * 1e3,
        socket_errors=counts["socket_errors"],
        non_2xx=counts["non_2xx"],
        client_cpu_s=time.process_time() - cpu0,
    )
