"""``archive-vault detect``: run leak detection's sweep once, as the service does every minute.

Safe alongside the service: each batch moves the sweep's cursor by a
conditional UPDATE, so a batch is swept by one process only, and a rule's
window raises one case whoever sweeps it.
"""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
import typer

from audit.models import entry_table
from cli.common import DEFAULT_DATA_DIR, DataDir, console, finish, open_store, progress_bar
from foundation.db import transaction
from policies.decoys import Decoys
from policies.detection import BATCH, CURSOR, Detector, SweepResult
from policies.detection_cases import Alerts
from policies.detection_rules import load_rules
from policies.leaks import LeakCases
from policies.models import PolicyCounter
from policies.notifications import MailOptions, Notifier
from policies.workflow import Workflow


def _behind(engine: sa.Engine) -> int:
    """Audit entries not swept yet."""
    counter: sa.Table = PolicyCounter.__table__  # type: ignore[attr-defined]
    with transaction(engine) as session:
        conn = session.connection()
        head = conn.execute(sa.select(sa.func.max(entry_table.c.seq))).scalar() or 0
        seen = conn.execute(sa.select(counter.c.value).where(counter.c.name == CURSOR)).scalar()
    return max(0, int(head) - int(seen or 0))


def detect(
    check: Annotated[
        bool, typer.Option("--check", help="Only load and check the rules file.")
    ] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Run the detection rules over the audit entries appended since the last sweep."""
    store = open_store(data_dir)
    rules = load_rules(store.settings.detection_file)  # a bad file stops here, named
    if check:
        console.print(f"{store.settings.detection_file}: rules are valid")
        return
    workflow = Workflow(audit=store.audit)
    workflow.notifier = Notifier(MailOptions.from_settings(store.settings))
    alerts = Alerts(LeakCases(workflow, store.vault.keys))
    decoys = Decoys(engine=store.engine, desk=workflow, alerts=alerts, rules=rules)
    detector = Detector(
        engine=store.engine,
        alerts=alerts,
        decoys=decoys,
        rules=rules,
        sequence=store.audit.integrate,
    )
    total = SweepResult()
    with progress_bar() as bar:
        task = bar.add_task("sweeping the audit log", total=_behind(store.engine) or 1)
        while True:
            done = detector.sweep(max_batches=1)
            total.entries += done.entries
            total.touches += done.touches
            total.cases += done.cases
            bar.update(task, advance=BATCH if not done.caught_up else 0)
            if done.caught_up:
                bar.update(task, completed=bar.tasks[0].total)
                break
    finish(store)
    console.print(
        f"entries swept: {total.entries}, tallies: {total.touches}, "
        f"cases raised: {len(total.cases)}"
        + (f" ({', '.join(total.cases[:20])})" if total.cases else "")
    )


def register(app: typer.Typer) -> None:
    app.command("detect")(detect)
