"""The `secrets` command: one Typer app; domain errors become exit codes only here."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core

from commands.exit_codes import HELP_TEXT, ExitCode


class _Group(typer.core.TyperGroup):
    """The root group: before running, plain parameters get a coercion without pydantic
    (commands/fastparams.py; typer's own coercion still decides anything else)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        from commands import fastparams

        fastparams.install(self)
        return super().main(*args, **kwargs)


app = typer.Typer(
    name="secrets",
    cls=_Group,
    help="Secrets manager on an event-sourced audit ledger. " + HELP_TEXT,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
)


def _print_version(requested: bool) -> None:
    if not requested:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("secrets-ledger")
    except PackageNotFoundError:
        found = "unknown (package not installed)"
    print(f"secrets-ledger {found}")
    raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version of secrets-ledger and exit.",
        ),
    ] = False,
    log_file: Annotated[
        Path | None,
        typer.Option(
            "--log-file",
            envvar="SECRETS_LEDGER_LOG_FILE",
            help="Append one JSON line per command here (level: SECRETS_LEDGER_LOG_LEVEL).",
            show_default=False,
        ),
    ] = None,
) -> None:
    # --version is eager: it answers before any command opens a ledger.
    from commands import oplog

    oplog.set_log_file(log_file)


def _register() -> None:
    from commands import dashboard_cmds, rotate_cmds, secrets_cmds
    from commands.audit_cmds import audit_app, projections_app, report_app
    from commands.auth_cmds import auth_app
    from commands.ledger_cmds import ledger_app
    from commands.metrics_cmds import metrics_app
    from commands.tmux_cmds import tmux_app

    secrets_cmds.register(app)
    dashboard_cmds.register(app)
    app.add_typer(auth_app, name="auth")
    app.add_typer(audit_app, name="audit")
    app.add_typer(report_app, name="report")
    app.add_typer(projections_app, name="projections")
    rotate_cmds.register(app)
    app.add_typer(tmux_app, name="tmux")
    app.add_typer(metrics_app, name="metrics")
    app.add_typer(ledger_app, name="ledger")


_register()


def _exit_status(code: object) -> int:
    if code is None:
        return ExitCode.OK
    return code if isinstance(code, int) else ExitCode.ERROR


def _invoke(failure: list[str]) -> int:
    from commands.exit_codes import for_error
    from commands.value_input import UsageProblem
    from ledger.errors import LedgerError

    try:
        # Standalone mode: Typer itself turns usage errors into exit code 2 and Ctrl-C into 1.
        # A fixed name: usage lines say `secrets`, and the completion variable is
        # _SECRETS_COMPLETE however the program was started (`python -m commands` too).
        app(prog_name="secrets")
    except UsageProblem as exc:
        failure.append(type(exc).__name__)
        print(f"usage: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except LedgerError as exc:
        failure.append(type(exc).__name__)
        message = str(exc)
        if not message.startswith("PERMISSION_DENIED"):
            message = f"error: {message}"
        print(message, file=sys.stderr)
        return for_error(exc)
    except KeyboardInterrupt:
        failure.append("KeyboardInterrupt")
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as exc:
        failure.append(type(exc).__name__)
        from eventsourcing.persistence import PersistenceError

        if isinstance(exc, PersistenceError) and os.environ.get("SECRETS_LEDGER_DEBUG") != "1":
            # The event store failed mid-command (say, the PostgreSQL server went away).
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            print(f"error: the event store failed: {first}", file=sys.stderr)
            return ExitCode.ERROR
        # Never a traceback by default: locals or arguments could hold a value.
        if os.environ.get("SECRETS_LEDGER_DEBUG") == "1":
            raise
        if type(exc).__name__ == "MapperDeserialisationError":
            # Matched by name: importing the library here would slow every command's start.
            print(
                "error: a recorded event cannot be decoded (the ledger file was altered or "
                "damaged); run `secrets audit verify`",
                file=sys.stderr,
            )
            sys.exit(ExitCode.INTEGRITY_FAILURE)
        print(
            f"internal error ({type(exc).__name__}); rerun with SECRETS_LEDGER_DEBUG=1 "
            "to see where",
            file=sys.stderr,
        )
        return ExitCode.ERROR
    return ExitCode.OK


def run() -> None:
    from commands import oplog

    started = time.monotonic()
    # The command words only: the rest of argv may hold a value (`--value`).
    operation = oplog.command_path(app, sys.argv[1:])
    failure: list[str] = []
    status: int = ExitCode.ERROR
    try:
        status = _invoke(failure)
    except SystemExit as exc:
        status = _exit_status(exc.code)
        raise
    finally:
        oplog.command_finished(operation, status, failure[0] if failure else None, started)
    sys.exit(status)
