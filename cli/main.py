"""The ``archive-vault`` command line.

This package is the composition root for operators: the only place that wires
settings, database, keys, policies and the API together. Errors print one clear
line and exit non-zero; tracebacks (which can carry SQL parameters) are never
shown unless VAULT_DEBUG=1.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from sqlalchemy.exc import DBAPIError

from audit.errors import AuditError
from cli import access_report, archives, backup, detection, leaks, notifications, service
from cli.audit import audit_app
from cli.common import err
from cli.inspect import inspect_app
from cli.operator import name_operator
from cli.policy import policy_app
from foundation.db import is_storage_full
from policies.errors import PolicyError
from vault.errors import VaultError

app = typer.Typer(
    help="archive-vault: an encrypted, policy-decided, audited vault of customer archives.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _operator(
    operator: Annotated[
        str | None,
        typer.Option(
            "--as",
            metavar="NAME",
            envvar="VAULT_OPERATOR",
            help="Run as this vault administrator (password asked, or "
            "VAULT_OPERATOR_PASSWORD_FILE); required for changes once the vault has one.",
        ),
    ] = None,
) -> None:
    name_operator(operator)


app.add_typer(archives.app)
app.add_typer(archives.customer_app, name="customer")
app.add_typer(archives.keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(policy_app, name="policy")
app.add_typer(inspect_app, name="inspect")
service.register(app)
notifications.register(app, service.user_app)
leaks.register(app)
detection.register(app)
access_report.register(app)
backup.register(app)


def _hoist_operator(argv: list[str]) -> list[str]:
    """``--as NAME`` is the root's option, but people type it after the command too
    (``archive-vault user add li.na --role salesperson --as wang.admin``): move it first."""
    rest: list[str] = []
    front: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg == "--as" and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            front += argv[i : i + 2]
            i += 2
            continue
        if arg.startswith("--as="):
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


def _undecodable(argv: list[str]) -> str | None:
    """The first argument (or VAULT_OPERATOR) that was not UTF-8, described; None if all are.

    Python hands bytes that are not UTF-8 on as lone surrogates (``\\udcff``), which
    no database driver can encode: a name or filter typed in another encoding would
    end as an internal error when the value reached a query. Refused before any
    command runs, as a usage error; the value itself is not printed.
    """
    named = [(f"argument {i}", arg) for i, arg in enumerate(argv, 1)]
    named.append(("VAULT_OPERATOR", os.environ.get("VAULT_OPERATOR", "")))
    for where, value in named:
        if any("\ud800" <= c <= "\udfff" for c in value):
            return where
    return None


def main() -> None:
    os.umask(0o077)  # nothing the vault writes (database, WAL, exports) is for other users
    bad = _undecodable(sys.argv[1:])
    if bad is not None:
        err.print(f"[red]error:[/] {bad} is not valid UTF-8", highlight=False)
        sys.exit(2)
    try:
        app(args=_hoist_operator(sys.argv[1:]))
    except VaultError as exc:
        err.print(f"[red]error:[/] {exc.message}", highlight=False)
        sys.exit(1)
    except (PolicyError, AuditError) as exc:  # their messages are content-free by contract
        _if_storage_full(exc)
        err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(1)
    except OSError as exc:  # a path that is not what the command needs
        where = f" ({exc.filename})" if exc.filename else ""
        err.print(f"[red]error:[/] {exc.strerror or type(exc).__name__}{where}", highlight=False)
        sys.exit(1)
    except DBAPIError as exc:
        _if_storage_full(exc)
        if os.environ.get("VAULT_DEBUG") == "1":
            raise
        err.print(
            f"[red]error:[/] the database refused the operation "
            f"({type(exc.orig).__name__}); nothing was changed",
            highlight=False,
        )
        sys.exit(1)
    except Exception as exc:  # a bug: say so without printing values that might be content
        if os.environ.get("VAULT_DEBUG") == "1":
            raise
        err.print(
            f"[red]internal error:[/] {type(exc).__name__}; no content was shown. "
            "Re-run with VAULT_DEBUG=1 to see the traceback.",
            highlight=False,
        )
        sys.exit(70)


def _if_storage_full(exc: Exception) -> None:
    """A full disk is named as such (one line), not as a refusal or an audit failure."""
    if is_storage_full(exc):
        err.print(
            "[red]error:[/] the database's disk is full; nothing was changed", highlight=False
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
