"""The `secrets` command: one Typer app; domain errors become exit codes only here."""

from __future__ import annotations

import os
import sys

import typer

from commands.exit_codes import HELP_TEXT, ExitCode

app = typer.Typer(
    name="secrets",
    help="Secrets manager on an event-sourced audit ledger. " + HELP_TEXT,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
)


def _register() -> None:
    from commands import secrets_cmds
    from commands.auth_cmds import auth_app

    secrets_cmds.register(app)
    app.add_typer(auth_app, name="auth")


_register()


def _register_ledger() -> None:
    from commands.ledger_cmds import ledger_app

    app.add_typer(ledger_app, name="ledger")


_register_ledger()


def run() -> None:
    from commands.exit_codes import for_error
    from commands.value_input import UsageProblem
    from ledger.errors import LedgerError

    try:
        # Standalone mode: Typer itself turns usage errors into exit code 2 and Ctrl-C into 1.
        app()
    except UsageProblem as exc:
        print(f"usage: {exc}", file=sys.stderr)
        sys.exit(ExitCode.USAGE)
    except LedgerError as exc:
        message = str(exc)
        if not message.startswith("PERMISSION_DENIED"):
            message = f"error: {message}"
        print(message, file=sys.stderr)
        sys.exit(for_error(exc))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(ExitCode.INTERRUPTED)
    except Exception as exc:
        from eventsourcing.persistence import PersistenceError

        if isinstance(exc, PersistenceError) and os.environ.get("SECRETS_LEDGER_DEBUG") != "1":
            # The event store failed mid-command (say, the PostgreSQL server went away).
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            print(f"error: the event store failed: {first}", file=sys.stderr)
            sys.exit(ExitCode.ERROR)
        # Never a traceback by default: locals or arguments could hold a value.
        if os.environ.get("SECRETS_LEDGER_DEBUG") == "1":
            raise
        print(
            f"internal error ({type(exc).__name__}); rerun with SECRETS_LEDGER_DEBUG=1 "
            "to see where",
            file=sys.stderr,
        )
        sys.exit(ExitCode.ERROR)
