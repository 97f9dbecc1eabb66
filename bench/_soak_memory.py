"""Each server worker's resident memory, sampled every few seconds through a run.

The workers are the serve process's children that uvicorn spawned
(``multiprocessing.spawn``; its resource tracker is not one); with one worker
uvicorn serves from the serve process itself. RSS is ``VmRSS`` from
``/proc/<pid>/status``. Growth is measured from the first sample after the
warm-up (caches, pools and the interpreter's arenas fill in the first minutes)
to the end, each as the median of a window of samples: flat within the
threshold is a pass. A worker that was replaced
during the run (its pid changed) is a failure in itself: a crash or a kill.
"""

from __future__ import annotations

import statistics
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
    """RSS per worker after the warm-up and at the end, growth, and whether every worker
    stayed within ``limit`` (a fraction) and was never replaced.

    Each figure is the median of a window of samples, not one sample: a worker's RSS
    rises and falls by tens of MiB around a large answer, and one sample would catch
    that as growth or hide it. The warm-up window is the tenth of the run after the
    first ``warm_up`` (a fraction), the end window the run's last tenth.
    """
    warm_from, warm_to, end_from = warm_up * seconds, (warm_up + 0.1) * seconds, 0.9 * seconds
    warm_rows = [s for t, s in samples if warm_from <= t < warm_to and s]
    end_rows = [s for t, s in samples if t >= end_from and s]
    pids = sorted({p for _, s in samples for p in s})
    if not warm_rows or not end_rows:
        return {
            "ok": False,
            "replaced": False,
            "problem": "no samples after the warm-up or at the end",
            "workers": [],
        }
    warm, end = set(warm_rows[0]), set(end_rows[-1])
    workers = []
    for pid in sorted(warm & end):
        at_warm = statistics.median(s[pid] for s in warm_rows if pid in s)
        at_end = statistics.median(s[pid] for s in end_rows if pid in s)
        workers.append(
            {
                "pid": pid,
                "rss_warm_kib": round(at_warm),
                "rss_end_kib": round(at_end),
                "rss_peak_kib": max(s.get(pid, 0) for _, s in samples),
                "growth": (at_end - at_warm) / at_warm,
            }
        )
    replaced = set(pids) != warm or warm != end
    worst = max((w["growth"] for w in workers), default=0.0)
    problem = "a worker was replaced during the run" if replaced else ""
    if not problem and worst >= limit:
        problem = f"RSS grew {worst:.1%} (limit {limit:.0%})"
    return {
        "ok": not problem,
        "replaced": replaced,
        "problem": problem,
        "warm_at_s": round(warm_from, 1),
        "end_at_s": round(end_from, 1),
        "samples": len(samples),
        "limit": limit,
        "max_growth": worst,
        "workers": workers,
    }
