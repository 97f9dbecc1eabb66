"""Export fingerprints: leaked rows needed to name the export, and the export's overhead.

``run(quick)`` builds 20 exports of 5,000 rows each (identity and contact
groups, synthetic customers from ``vault.seed``, drawn from 25,000 archives so
exports overlap), then for k = 1, 2, 3, ... leaked rows draws trials: a random
export, k random rows of it, scored against all 20 (``Fingerprinter.score``);
a trial is right when that export, and only it, is named at ≥ 99 %. The first k
with ≥ 99 % right trials is reported, with the rate at which k plainly rendered
rows name any export (should be 0). The overhead row times marking plus CSV
writing against CSV writing of the same rows unmarked, in the same run.
"""

from __future__ import annotations

import csv
import io
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import vault  # noqa: E402
from policies.fingerprint import CONFIDENCE, Candidate, Fingerprinter, Row, decoys_for  # noqa: E402
from vault.schema import load_schema  # noqa: E402
from vault.seed import SyntheticArchives  # noqa: E402

GROUPS = ("identity", "contact")
EXPORTS = 20
ROWS = 5000
UNIVERSE = 25_000
KS = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50)


def _universe(schema: Any, n: int) -> dict[str, dict[str, dict[str, str]]]:
    gen = SyntheticArchives(seed=13, owners=(("zhang.wei", "销售一部"),))
    out: dict[str, dict[str, dict[str, str]]] = {}
    for i, r in enumerate(gen.many(n), start=1):
        content: dict[str, dict[str, str]] = {}
        for f, value in r["profile"].items():
            spec = schema.fields[f]
            if spec.group in GROUPS:
                content.setdefault(spec.group, {})[f] = spec.normalise(value, 2000)
        out[f"KH-2026-{i:06d}"] = content
    return out


def _csv(rows: list[Row], fields: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["archive_no", *fields])
    for no, content in rows:
        flat = {k: v for g in content.values() for k, v in g.items()}
        writer.writerow([no, *(flat.get(f, "") for f in fields)])
    return out.getvalue()


def _flat(row: Row) -> dict[str, str]:
    return {"archive_no": row[0]} | {k: v for g in row[1].values() for k, v in g.items()}


def run(quick: bool) -> list[dict[str, Any]]:
    schema = load_schema(Path(vault.__file__).parent / "profile_schema.toml")
    fp = Fingerprinter(bytes(range(32)), schema)
    fields = [f for g in GROUPS for f in schema.groups[g].fields]
    universe = _universe(schema, UNIVERSE)
    numbers = list(universe)
    rng = random.Random(5)
    files: dict[str, list[Row]] = {}
    plain: dict[str, list[Row]] = {}
    candidates: list[Candidate] = []
    for e in range(EXPORTS):
        uid = f"FP-{e:010d}"
        chosen = rng.sample(numbers, ROWS)
        rows = [(no, universe[no]) for no in chosen]
        decoys = fp.decoy_numbers(uid, decoys_for(ROWS), ["2026"], lambda no: no in universe)
        files[uid] = fp.mark(uid, rows, decoys, GROUPS)
        plain[uid] = rows
        held = frozenset(fields)
        candidates.append(Candidate(uid, frozenset(chosen), held, tuple(decoys)))

    trials = 100 if quick else 400
    needed: int | None = None
    false_named = 0
    false_trials = 0
    for k in KS:
        right = 0
        for _ in range(trials):
            uid = rng.choice(list(files))
            leaked = [_flat(r) for r in rng.sample(files[uid], k)]
            scores = fp.score(leaked, candidates, EXPORTS)
            named = [s.uid for s in scores if s.confidence >= CONFIDENCE]
            right += named == [uid]
            unmarked = [_flat(r) for r in rng.sample(plain[uid], k)]
            false_trials += 1
            false_named += any(
                s.confidence >= CONFIDENCE for s in fp.score(unmarked, candidates, EXPORTS)
            )
        if right >= 0.99 * trials:
            needed = k
            break

    reps = 2 if quick else 5
    rows_plain = plain[next(iter(plain))]
    t0 = time.perf_counter()
    for _ in range(reps):
        _csv(rows_plain, fields)
    base = (time.perf_counter() - t0) / reps
    t0 = time.perf_counter()
    for r in range(reps):
        _csv(fp.mark(f"FP-T{r}", rows_plain, [], GROUPS), fields)
    marked = (time.perf_counter() - t0) / reps
    return [
        {
            "name": "fingerprint: leaked rows to name the export at 99 %",
            "value": needed,
            "unit": f"rows (of {ROWS}; {EXPORTS} overlapping exports, {trials} trials per k)",
        },
        {
            "name": "fingerprint: plain files naming an export",
            "value": false_named,
            "unit": f"of {false_trials} trials",
        },
        {
            "name": "fingerprint: export of 5,000 rows, marked",
            "value": round(marked * 1000, 1),
            "unit": "ms",
            "ratio": round(marked / base, 2),
            "baseline": f"unmarked CSV {base * 1000:.1f} ms",
        },
    ]


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv), ensure_ascii=False, indent=1))
