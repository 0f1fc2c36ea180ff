"""Per-command plumbing: open the ledger, present the caller's credential, print results."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger import context

if TYPE_CHECKING:
    from ledger.access.credentials import Credential
    from ledger.address import SecretAddress
    from ledger.application import SecretsLedger
    from projections.views import Views


def home_dir(home: Path | None) -> Path:
    from ledger.store.config import default_home

    return home if home is not None else default_home()


_database_url: str | None = None


def use_database_url(url: str | None) -> None:
    """The command's `--database-url` (or $SECRETS_LEDGER_DATABASE_URL), for every open."""
    global _database_url
    _database_url = url or None


def open_ledger(home: Path | None, *, create: bool = False) -> SecretsLedger:
    from ledger.store.opening import open_ledger as _open

    context.correlation_id()  # one correlation id for every event of this command
    ledger = _open(home_dir(home), create=create, database_url=_database_url)
    for warning in ledger.warnings:
        info(f"warning: {warning}")
    _opened.append(ledger)
    _warned[id(ledger)] = len(ledger.warnings)
    return ledger


_opened: list[SecretsLedger] = []
_warned: dict[int, int] = {}  # per opened ledger, how many of its warnings were printed


def opened() -> list[SecretsLedger]:
    """The ledgers this command has opened so far."""
    return list(_opened)


def report_post_commit_problems() -> None:
    """Warn about work after a commit that failed (the command's writes did land), and
    what the ledger noted since it was opened (a damaged views cache rebuilt)."""
    for ledger in _opened:
        for warning in ledger.warnings[_warned.get(id(ledger), 0) :]:
            info(f"warning: {warning}")
        _warned[id(ledger)] = len(ledger.warnings)
        for problem in ledger.post_commit_problems:
            info(f"warning: {problem}")


def damaged_views() -> list[str]:
    """The views caches of the ledgers this command opened that are damaged now, each
    removed (the next command rebuilds it from the log): for an error SQLite raised in the
    middle of a command, which is the cache's and not the ledger's."""
    import sqlite3

    from projections.views_schema import damage, discard

    found: list[str] = []
    for ledger in _opened:
        path = ledger.home / ledger.views_file
        try:
            problem = damage(path)
        except sqlite3.Error:
            continue  # cannot be read now (locked): nothing shown against it
        if problem is not None:
            discard(path)
            found.append(f"{path} ({problem})")
    return found


def close_opened() -> None:
    """Close what the command opened, before interpreter shutdown: a PostgreSQL pool left to
    its `__del__` then runs half torn down and prints a traceback on stderr."""
    import contextlib

    while _opened:
        with contextlib.suppress(Exception):
            _opened.pop().close()


def credential(ledger: SecretsLedger) -> Credential:
    import os

    from commands import oplog
    from ledger.access.session_file import TOKEN_VARIABLE
    from ledger.access.session_file import credential as _credential

    automation = os.environ.get("SECRETS_LEDGER_AUTOMATION", "").strip()
    if automation and not os.environ.get(TOKEN_VARIABLE, "").strip():
        # A scheduled job: its operator's token lives in the keychain, never in the crontab.
        from ledger.access.credentials import Credential
        from ledger.operator import validate_operator_name

        validate_operator_name(automation)
        token = ledger.vault.get(f"automation.{automation}.token")
        if token is None:
            found = Credential(
                problem=f"no token for automation operator {automation!r} in the keychain; "
                "run `secrets rotate schedule install`"
            )
        else:
            found = Credential(token=token)
    else:
        found = _credential(ledger.home)
    oplog.bind_credential(found)
    if found.token is None and found.session_secret is None and not ledger.is_initialized():
        # No credential on a ledger nobody initialised (a store left empty): the next step is
        # `secrets init`, not `secrets auth login`. Read only when there is no credential.
        from ledger.errors import NotInitialized

        raise NotInitialized(
            f"no ledger at {ledger.location or ledger.home} yet; run `secrets init`"
        )
    return found


def views(ledger: SecretsLedger) -> Views:
    from projections.views import Views

    found = Views(ledger)
    found.catch_up()
    return found


def claim_operator(name: str) -> None:
    """Name the operator in this command's log line, for commands run before a credential."""
    from commands import oplog
    from ledger.errors import ValidationFailed
    from ledger.operator import validate_operator_name

    try:
        validate_operator_name(name)
    except ValidationFailed:
        return  # the command itself reports it; an invalid name is not logged
    oplog.bind(operator=name)


def address(environment: str, service: str, name: str) -> SecretAddress:
    from commands import oplog
    from ledger.address import SecretAddress
    from ledger.errors import ValidationFailed

    try:
        parsed = SecretAddress.parse(environment, service, name)
    except ValidationFailed as failed:
        _record_rejected_name(environment, service, name, failed.rule)
        raise
    # Only once validated: a rejected name could carry anything, even a pasted value.
    oplog.bind(address=str(parsed))
    return parsed


def _record_rejected_name(environment: str, service: str, name: str, rule: str) -> None:
    """HBSE-007 for a bad address, in the ledger the command opened (every command that takes
    an address opens it first); an uninitialised home records nothing."""
    from ledger.errors import NotInitialized
    from ledger.services.name_rejection import record_rejected_name

    if not _opened:
        return
    ledger = _opened[-1]
    try:
        record_rejected_name(ledger, credential(ledger), environment, service, name, rule)
    except NotInitialized:
        return


def emit_json(document: Any) -> None:
    """The document as `json.dumps(document, indent=2, sort_keys=True)` writes it."""
    from commands.jsonout import dumps

    sys.stdout.write(dumps(document) + "\n")


def info(message: str) -> None:
    """Human-facing progress and confirmations go to stderr; stdout stays for data."""
    print(message, file=sys.stderr)


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


_exec: tuple[list[str], dict[str, str]] | None = None


def exec_after(argv: list[str], env: dict[str, str]) -> None:
    """Replace this process with `argv` once the command has finished its own work (its
    writes committed, ledgers closed, log line written): `commands.main.run` calls
    `exec_pending` last."""
    global _exec
    _exec = (argv, env)


def exec_pending() -> None:
    """Exec what `exec_after` asked for, if anything; returns only if nothing was asked."""
    import os

    global _exec
    if _exec is None:
        return
    argv, env = _exec
    _exec = None
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(argv[0], argv, env)  # noqa: S606  # the caller's own program, no shell
    except OSError as exc:
        from commands.exit_codes import ExitCode

        print(f"error: cannot start {argv[0]!r}: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(ExitCode.ERROR)
