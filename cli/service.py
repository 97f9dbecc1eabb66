"""Operator commands for the running service: the sweeper, ``serve`` and ``demo``.

These compose the packages (vault, policies, api) the way the service does;
like ``vault/cli.py`` this is a composition root, not library code.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from rich.table import Table
from sqlmodel import Session, select

from api.logging_setup import log_config
from api.metrics import MULTIPROC_ENV
from api.security import hash_password
from api.serving import HTTP_PROTOCOL, WORKER_HEALTHCHECK_SECONDS
from api.supervisor import metrics_dir, run_workers
from audit.verify import verify_bundle
from cli.archives import init, seed
from cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    cli_actor,
    console,
    err,
    finish,
    open_store,
    settings_for,
)
from cli.users import user_app
from foundation.clock import utcnow
from foundation.db import transaction
from policies.directory import add_user
from policies.inspection import Inspections
from policies.notifications import MailOptions, Notifier
from policies.workflow import Workflow
from vault.demo import require_demo
from vault.errors import NotInitialised
from vault.models import User
from vault.restore import reapply_destructions as reapply
from vault.store import ArchiveStore
from vault.vault import open_vault

APP = "api.app:app_factory"
DEMO_PASSWORD = "demo-vault-2026"  # noqa: S105 - printed on purpose: demo vaults only
DEMO_USERS = (
    # username, roles, department, clearance, external credential
    ("zhang.wei", ["salesperson"], "销售一部", "secret", None),
    ("li.na", ["salesperson"], "销售一部", "secret", None),
    ("wang.fang", ["salesperson"], "销售二部", "secret", None),
    ("liu.yang", ["salesperson"], "销售二部", "secret", None),
    ("head.sales1", ["department_head"], "销售一部", "secret", None),
    ("head.sales2", ["department_head"], "销售二部", "secret", None),
    ("chen.jing", ["information_officer"], "客户服务部", "top_secret", None),
    # A second officer: one of them keeps an archive while the other approves access
    # to it (one person signs one stage; vault.seed spreads the custodianships).
    ("huang.min", ["information_officer"], "客户服务部", "top_secret", None),
    ("zhao.lei", ["info_supervisor"], "客户服务部", "top_secret", None),
    ("sun.li", ["cs_manager"], "客户服务部", "top_secret", None),
    ("zhou.gm", ["general_manager"], "总经理办公室", "top_secret", None),
    ("qian.audit", ["compliance"], "合规部", "internal", None),
    ("visitor.wu", ["external"], "访客", "internal", "介绍信 2026-017"),
    ("admin", ["admin"], "信息技术部", "internal", None),
)

# Display names signers read in a request's facts (查阅人概况, Art 18.1).
DEMO_NAMES = {
    "zhang.wei": "张伟",
    "li.na": "李娜",
    "wang.fang": "王芳",
    "liu.yang": "刘洋",
    "head.sales1": "马强",
    "head.sales2": "何静",
    "chen.jing": "陈静",
    "huang.min": "黄敏",
    "zhao.lei": "赵磊",
    "sun.li": "孙丽",
    "zhou.gm": "周建国",
    "qian.audit": "钱明",
    "visitor.wu": "吴晓",
    "admin": "系统管理员",
}


def sweep(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Expire grants and stale requests, flag overdue loans, list archives past retention."""

    store = open_store(data_dir)
    now = utcnow()
    with transaction(store.engine) as session:
        workflow = Workflow(audit=store.audit)
        workflow.notifier = Notifier(MailOptions.from_settings(store.settings))
        result = workflow.sweeper.sweep(session, now=now)
    page = store.archives.list(actor=cli_actor(), retention_before=now.date(), limit=500)
    inspection = Inspections(store=store, audit=store.audit, clock=utcnow).due(now)
    finish(store)
    console.print(
        f"expired requests: {len(result.expired_requests)}, expired grants: "
        f"{len(result.expired_grants)}, overdue loans: {len(result.overdue_loans)}, "
        f"loans due within a day: {len(result.due_loans)}, ended web sessions removed: "
        f"{result.purged_web_sessions}"
    )
    if page.total:
        table = Table(title=f"{page.total} archives past retention (propose destruction, Art 25)")
        for column in ("archive", "owner", "retention until"):
            table.add_column(column)
        for m in page.items:
            table.add_row(m.archive_no, m.owner, m.retention_until.isoformat())
        console.print(table)
    # Art 14: when the last inspection was, and a warning once half a year has passed.
    console.print(inspection.line(now), style="yellow" if inspection.due else None)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Needs PostgreSQL if > 1.")] = 1,
    forwarded_allow_ips: Annotated[
        str,
        typer.Option(
            help="Addresses of the reverse proxy in front (comma-separated IPs or networks): "
            "only connections from them may set the client address with X-Forwarded-For.",
        ),
    ] = "",
    graceful_timeout: Annotated[
        int,
        typer.Option(
            min=1,
            max=3600,
            help="On SIGTERM, seconds to let requests in flight finish before they are cut.",
        ),
    ] = 30,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Run the HTTP service (uvicorn)."""

    proxies = _proxy_addresses(forwarded_allow_ips)
    settings = settings_for(data_dir)
    open_vault(settings)  # fail here, clearly, rather than in every worker
    if workers > 1 and settings.is_sqlite:
        err.print(
            "[red]error:[/] --workers > 1 needs PostgreSQL (set VAULT_DATABASE_URL); "
            "the embedded SQLite vault serves from one process"
        )
        raise typer.Exit(2)
    os.environ["VAULT_DATA_DIR"] = str(settings.data_dir)
    console.print(
        f"Serving on http://{host}:{port}. Sign in at http://{host}:{port}/login "
        "(API docs at /docs); Ctrl-C to stop"
    )
    options: dict[str, Any] = {
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        # JSON lines on stderr (api.logging_setup); uvicorn's access log is off: it
        # prints paths with their query strings, api.observe logs route templates.
        "log_config": log_config(settings.log_level),
        "log_level": settings.log_level,
        "access_log": False,
        # The client address is what the audit records and what the login guard counts
        # failures by: it comes from the headers only when a named proxy sent them.
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": ",".join(proxies) if proxies else None,
        "http": HTTP_PROTOCOL,
        "timeout_worker_healthcheck": WORKER_HEALTHCHECK_SECONDS,
        # Bounded: a client sending its upload slowly no longer holds a stop (or a
        # deploy) for as long as it likes; what it had not finished is cut, and a
        # request is only ever answered after its audit entry committed.
        "timeout_graceful_shutdown": graceful_timeout,
    }
    if workers == 1:  # one process: its metrics live in its memory
        uvicorn.run(APP, **options)
        return
    # Every worker counts into files of one private directory, so a scrape of
    # /metrics answered by any worker sums them all (prometheus-client multiprocess;
    # set before the workers start, as it must be before their first metric).
    metrics = metrics_dir(settings.data_dir)
    os.environ[MULTIPROC_ENV] = str(metrics)
    try:
        run_workers(uvicorn.Config(APP, **options))  # logs a worker's death
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(metrics, ignore_errors=True)


def _proxy_addresses(text: str) -> list[str]:
    """The proxies ``--forwarded-allow-ips`` names, each an IP address or network.

    ``*`` (trust every peer) is refused: anyone could then choose the address the
    audit records for them and spread password guesses over made-up addresses.
    """
    out: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            out.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            err.print(
                f"[red]error:[/] --forwarded-allow-ips: {part!r} is not an IP address or "
                "network (name the reverse proxy's own addresses; '*' is not accepted)"
            )
            raise typer.Exit(2) from None
    return out


def demo(
    customers: Annotated[int, typer.Option(min=1, max=100_000)] = 2000,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Prepare, do not serve.")] = False,
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Create a demo vault (or reopen one it created): users of every role, synthetic archives.

    Refused on any vault not created as a demo vault (``vault.demo``): the
    accounts it adds have a published password.
    """

    settings = settings_for(data_dir)
    try:
        vault = open_vault(settings)
    except NotInitialised:
        init(data_dir, demo=True)
        vault = open_vault(settings)
    require_demo(vault, "demo")
    store = ArchiveStore(vault)
    hashed = hash_password(DEMO_PASSWORD)
    with transaction(vault.engine) as session:
        for name, roles, dept, clearance, credential in DEMO_USERS:
            if session.exec(select(User).where(User.username == name)).first():
                continue
            user = add_user(
                session,
                username=name,
                roles=roles,
                department=dept,
                clearance=clearance,
                external=credential is not None,
                credential_ref=credential,
                display_name=DEMO_NAMES.get(name, ""),
                audit=store.audit,
                actor=cli_actor(),
            )
            user.password_hash = hashed
            session.add(user)
    with Session(vault.engine) as session:
        existing = store.archives.list(actor=cli_actor(), limit=1, audit=False).total
    if existing == 0:
        seed(customers=customers, rng_seed=2026, data_dir=data_dir)
    else:
        console.print(f"The vault already holds {existing} archives; not seeding again")
    finish(store)
    table = Table(title=f"Demo logins (password for all: {DEMO_PASSWORD})")
    for column in ("username", "name", "roles", "department"):
        table.add_column(column)
    for name, roles, dept, _c, _cred in DEMO_USERS:
        table.add_row(name, DEMO_NAMES.get(name, ""), ", ".join(roles), dept)
    console.print(table)
    console.print(f"Open the sign-in page: http://127.0.0.1:{port}/login")
    console.print(
        f"API: curl -d 'username=zhang.wei&password=…' http://127.0.0.1:{port}/auth/token"
    )
    if not no_serve:
        serve(host="127.0.0.1", port=port, workers=1, data_dir=data_dir)


def register(app: typer.Typer) -> None:
    app.add_typer(user_app, name="user")
    app.command()(sweep)
    app.command()(serve)
    app.command()(demo)
    app.command("reapply-destructions")(reapply_destructions)


__all__ = ["Path", "register"]


def reapply_destructions(
    bundle: Annotated[Path, typer.Argument(help="An audit bundle exported after the backup.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """After restoring a backup: destroy again every archive the newer audit log destroyed.

    The bundle is verified first (against this vault's audit key), so a forged
    bundle can neither destroy archives nor hide a destruction.
    """

    store = open_store(data_dir)
    try:
        data = json.loads(bundle.read_bytes())
    except (OSError, ValueError):
        err.print(f"[red]error:[/] cannot read {bundle} as an audit bundle")
        raise typer.Exit(1) from None
    pinned = store.vault.keys.audit_signing_key().public_key()
    report = verify_bundle(data, public_key=pinned) if isinstance(data, dict) else None
    if report is None or not report.ok:
        problem = report.problem if report else "not an audit bundle"
        err.print(f"[red]error:[/] the bundle does not verify with this vault's key: {problem}")
        raise typer.Exit(1)
    result = reapply(store, data["entries"], cli_actor())
    finish(store)
    console.print(
        f"re-destroyed {len(result.done)} archive(s); {result.already} already destroyed; "
        f"{result.missing} not in this database"
    )
    for archive_no in result.done:
        console.print(f"  {archive_no}")
