"""Each server worker's resident memory, sampled every few seconds through a run.

The workers are the serve process's children that uvicorn spawned
(``multiprocessing.spawn``; its resource tracker is not one); with one worker
uvicorn serves from the serve process itself. RSS is ``VmRSS`` from
``/proc/<pid>/status``. Growth is measured from the first sample after the
warm-up (caches, pools and the interpreter's arenas fill in the first minutes)
to the last: flat within the threshold is a pass. A worker that was replaced
during the run (its pid changed) is a failure in itself: a crash or a kill.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._common import children


def rss_kib(pid: int) -> int | None:
    """A process's resident set in KiB, or None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def worker_pids(serve_pid: int) -> list[int]:
    """uvicorn's worker processes under ``serve_pid``; the process itself if it has none."""
    workers = []
    for pid in children(serve_pid):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers.append(pid)
        except OSError:
            continue
    return sorted(workers) or [serve_pid]


@dataclass
class Sampler:
    """Samples every ``every`` seconds from a thread until stopped."""

    serve_pid: int
    every: float
    samples: list[tuple[float, dict[int, int]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self, t0: float) -> None:
        found = {pid: rss_kib(pid) for pid in worker_pids(self.serve_pid)}
        self.samples.append(
            (time.monotonic() - t0, {p: kib for p, kib in found.items() if kib is not None})
        )

    def start(self) -> None:
        t0 = time.monotonic()

        def loop() -> None:
            while True:
                self.sample(t0)
                if self._stop.wait(self.every):
                    return

        self._thread = threading.Thread(target=loop, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def summary(
    samples: list[tuple[float, dict[int, int]]], seconds: float, warm_up: float, limit: float
) -> dict[str, Any]:
    """RSS per worker after ``warm_up`` (a fraction of ``seconds``) and at the end, growth,
    and whether every worker stayed within ``limit`` (a fraction) and was never replaced."""
    warm_at = warm_up * seconds
    after = [(t, s) for t, s in samples if t >= warm_at and s]
    pids = sorted({p for _, s in samples for p in s})
    if len(after) < 2:
        return {"ok": False, "problem": "fewer than two samples after the warm-up", "workers": []}
    (t_warm, warm), (t_end, end) = after[0], after[-1]
    workers = []
    for pid in sorted(warm):
        if pid not in end:
            continue
        growth = (end[pid] - warm[pid]) / warm[pid]
        workers.append(
            {
                "pid": pid,
                "rss_warm_kib": warm[pid],
                "rss_end_kib": end[pid],
                "rss_peak_kib": max(s.get(pid, 0) for _, s in samples),
                "growth": growth,
            }
        )
    replaced = set(pids) != set(warm) or set(warm) != set(end)
    worst = max((w["growth"] for w in workers), default=0.0)
    problem = "a worker was replaced during the run" if replaced else ""
    if not problem and worst >= limit:
        problem = f"RSS grew {worst:.1%} (limit {limit:.0%})"
    return {
        "ok": not problem,
        "problem": problem,
        "warm_at_s": round(t_warm, 1),
        "end_at_s": round(t_end, 1),
        "samples": len(samples),
        "limit": limit,
        "max_growth": worst,
        "workers": workers,
    }
