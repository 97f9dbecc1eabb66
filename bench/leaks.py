"""Leak-case benchmark: evidence queries, detection overhead, export fingerprints.

    .venv/bin/python bench/leaks.py            # full sizes
    .venv/bin/python bench/leaks.py --quick    # under a minute, smaller sizes (said in the table)
    .venv/bin/python bench/leaks.py --json     # one JSON object instead of the table

Each part lives in ``bench/_leaks_<part>.py`` and returns rows (name, value,
unit, and where the part has one, a ratio against a baseline measured in the
same run, with the goal it is held to):

* evidence: one account's evidence over 1,000,000 audit entries, through the
  index, against the JSON scan it replaced;
* detection: an audited read with the detection rules on, against the same read
  with them off (goal ≤ 1.1×);
* fingerprint: how many leaked rows name an export at 99 % confidence, and an
  export's cost with its fingerprint against the same export without;
* duties: the case list with overdue cases first, and a containment, against
  their plain counterparts;
* inspection: the Art 14 content check against a plain read of the same rows.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

# Each part's module; run in this order.
PARTS = ("evidence", "detection", "fingerprint", "duties", "inspection")


def run(quick: bool) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for part in PARTS:
        module = importlib.import_module(f"_leaks_{part}")
        for row in module.run(quick):
            rows.append({"part": part} | row)
    return {"quick": quick, "seconds": round(time.perf_counter() - started, 1), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="finish within a minute")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    result = run(args.quick)
    if args.json:
        print(json.dumps(result))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Leak cases" + (" (--quick)" if args.quick else ""))
    for column in ("part", "measure", "value", "unit", "ratio", "goal"):
        table.add_column(column)
    for row in result["rows"]:
        ratio = row.get("ratio")
        table.add_row(
            row["part"],
            str(row["name"]),
            f"{row['value']:,.3f}" if isinstance(row["value"], float) else str(row["value"]),
            str(row.get("unit", "")),
            f"{ratio:.2f}×" if isinstance(ratio, (int, float)) else "",
            str(row.get("goal", "")),
        )
    Console().print(table)
    print(f"{result['seconds']} s")


if __name__ == "__main__":
    main()
