"""The `secrets` command: one Typer app; domain errors become exit codes only here."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core

from commands.exit_codes import HELP_TEXT, ExitCode


class PipeClosed(Exception):
    """Whoever read the output closed it (`secrets list | head -1`): not a finding, not an
    error; the process ends as any Unix tool does then (commands/pipe.py)."""


# What a shell reports for a process killed by SIGPIPE (128 + 13); the oplog's exit code then.
PIPE_CLOSED = 141


def _stdout_file() -> tuple[int, int] | None:
    try:
        found = os.fstat(1)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _swapped_for_devnull(was: tuple[int, int] | None) -> bool:
    """Whether stdout became /dev/null since it was `was`: what rich's Console does on a
    broken pipe (help is drawn by rich) before it raises SystemExit(1)."""
    now = _stdout_file()
    if was is None or now is None or now == was:
        return False
    null = os.stat(os.devnull)
    return now == (null.st_dev, null.st_ino)


def _flushed() -> bool:
    """Flush stdout; False when its reader has gone."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        if not _pipe_closed(exc):
            raise
        return False
    return True


def _pipe_closed(exc: OSError) -> bool:
    import errno

    return exc.errno == errno.EPIPE


class _Group(typer.core.TyperGroup):
    """The root group: before running, plain parameters get a coercion without pydantic
    (commands/fastparams.py; typer's own coercion still decides anything else), every
    parameter the rules of commands/inputs.py, help is drawn
    without rich's Markdown and traceback modules (commands/typerfast.py), and a usage error
    is one line on stderr (`usage: ...`, exit 2) instead of typer's framed panel."""

    # Parsing (with --help and --version) and running: a closed output pipe leaves either as
    # PipeClosed, before typer's main turns it into exit 1, the code of a finding.
    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except OSError as exc:
            if _pipe_closed(exc):
                raise PipeClosed from None
            raise

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except OSError as exc:
            if _pipe_closed(exc):
                raise PipeClosed from None
            raise

    def main(self, *args: Any, **kwargs: Any) -> Any:
        from commands import fastparams, inputs, typer_adapter, typerfast

        click_errors = typer_adapter.click_exceptions()

        fastparams.install(self)
        inputs.install(self)
        typerfast.defer_rich_in_help(self)
        standalone = kwargs.pop("standalone_mode", True)
        kwargs["standalone_mode"] = False
        if not standalone:
            return super().main(*args, **kwargs)
        try:
            # Not standalone: errors come back here. A command's own return value is always
            # None, so an int can only be the code of an explicit exit (`typer.Exit`, --help).
            returned = super().main(*args, **kwargs)
        except click_errors.NoArgsIsHelpError as exc:
            exc.show()  # `secrets` alone, or a group alone: its help, as before
            sys.exit(exc.exit_code)
        except click_errors.UsageError as exc:
            if exc.ctx is not None:
                where = exc.ctx.command_path
            else:  # the parser's own errors (`--value` with no argument) carry no context
                where = _command_words(self, kwargs.get("args") or sys.argv[1:])
            print(f"usage: {exc.format_message()} (see `{where} --help`)", file=sys.stderr)
            _suggest(kwargs.get("args") or sys.argv[1:])
            sys.exit(exc.exit_code)
        except click_errors.ClickException as exc:
            print(f"error: {exc.format_message()}", file=sys.stderr)
            sys.exit(exc.exit_code)
        except typer.Abort:
            print("aborted: no input", file=sys.stderr)
            sys.exit(ExitCode.ERROR)
        sys.exit(returned if isinstance(returned, int) else ExitCode.OK)


def _suggest(args: list[str]) -> None:
    from commands import aliases

    known = {*PART_OF, "dashboard"}
    meant = aliases.suggestion(args, known)
    if meant is not None:
        print(f"did you mean `{meant}`?", file=sys.stderr)


def _command_words(group: Any, args: list[str]) -> str:
    """`secrets` and the command words that lead `args`, as far as they name commands."""
    words = ["secrets"]
    current = group
    for arg in args:
        sub = (getattr(current, "commands", None) or {}).get(arg)
        if sub is None:
            break
        words.append(arg)
        current = sub
    return " ".join(words)


# What a command says when the library cannot decode a recorded event (exit 6).
UNDECODABLE = (
    "a recorded event cannot be decoded (the ledger file was altered or damaged); "
    "run `secrets audit verify`"
)


def _new_app() -> typer.Typer:
    """The root `secrets` app with its options and no commands yet."""
    from commands import typerfast

    typerfast.install()  # before typer converts the app to click
    root = typer.Typer(
        name="secrets",
        cls=_Group,
        help="Secrets manager on an event-sourced audit ledger. " + HELP_TEXT,
        no_args_is_help=True,
        # Inherited by every command's context: `-h` is help everywhere, as users expect.
        context_settings={"help_option_names": ["-h", "--help"]},
        pretty_exceptions_enable=False,
        pretty_exceptions_show_locals=False,
    )
    root.callback()(_root)
    return root


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


def _secrets_commands(root: typer.Typer) -> None:
    from commands import secrets_cmds

    secrets_cmds.register(root)


def _consumers(root: typer.Typer) -> None:
    from commands import consume_cmds

    consume_cmds.register(root)


def _dashboard(root: typer.Typer) -> None:
    from commands import dashboard_cmds

    dashboard_cmds.register(root)


def _auth(root: typer.Typer) -> None:
    from commands.auth_cmds import auth_app

    root.add_typer(auth_app, name="auth")


def _audit(root: typer.Typer) -> None:
    from commands.audit import audit_app, projections_app, report_app

    root.add_typer(audit_app, name="audit")
    root.add_typer(report_app, name="report")
    root.add_typer(projections_app, name="projections")


def _rotate(root: typer.Typer) -> None:
    from commands import rotation

    rotation.register(root)


def _tmux(root: typer.Typer) -> None:
    from commands.tmux_cmds import tmux_app

    root.add_typer(tmux_app, name="tmux")


def _metrics(root: typer.Typer) -> None:
    from commands.metrics_cmds import metrics_app

    root.add_typer(metrics_app, name="metrics")


def _ledger(root: typer.Typer) -> None:
    from commands.ledger_cmds import ledger_app

    root.add_typer(ledger_app, name="ledger")


def _agent(root: typer.Typer) -> None:
    from commands.agent.cli import agent_app

    root.add_typer(agent_app, name="agent")


# In the order of `secrets --help`.
_PARTS: tuple[Callable[[typer.Typer], None], ...] = (
    _secrets_commands,
    _consumers,
    _dashboard,
    _auth,
    _audit,
    _rotate,
    _tmux,
    _metrics,
    _ledger,
    _agent,
)

# The part that registers each top-level command word. A command line naming one of these
# imports only that part, and of what the part registers keeps only the command (or group) it
# names: that spares importing every other command module and converting every other command
# to click (typer inspects each function's signature and annotations), about a third of a
# short command's start-up. `dashboard` lists every command, so it needs them all.
# tests/test_cli_surface.py checks this table against the whole app.
PART_OF: dict[str, Callable[[typer.Typer], None]] = {
    **dict.fromkeys(
        (
            "init",
            "set",
            "get",
            "list",
            "versions",
            "rollback",
            "delete",
            "restore",
            "destroy",
            "doctor",
        ),
        _secrets_commands,
    ),
    **dict.fromkeys(("run", "export", "inject"), _consumers),
    "auth": _auth,
    **dict.fromkeys(("audit", "report", "projections"), _audit),
    **dict.fromkeys(("rotate", "rotate-status", "emergency-rotate", "provision"), _rotate),
    "tmux": _tmux,
    "metrics": _metrics,
    "ledger": _ledger,
    "agent": _agent,
}


def full_app() -> typer.Typer:
    """The whole CLI, every command registered."""
    root = _new_app()
    for part in _PARTS:
        part(root)
    return root


def listing_app() -> typer.Typer:
    """The whole CLI as `secrets --help` lists it: every command, and every group without the
    commands inside it (the listing shows a group's name and help, never its commands), so
    typer does not convert the 30-odd commands of the groups to click only to list the
    groups. The registered apps are copied, never changed."""
    import copy

    root = full_app()
    listed = []
    for info in root.registered_groups:
        assert info.typer_instance is not None
        shell = copy.copy(info.typer_instance)
        shell.registered_commands = []
        shell.registered_groups = []
        group = copy.copy(info)
        group.typer_instance = shell
        listed.append(group)
    root.registered_groups = listed
    return root


def app_for(args: list[str]) -> typer.Typer:
    """The CLI for this command line: only the command its first word names, when that is
    known for sure; the listing of `secrets` and `secrets --help` when the root help is all
    it can show; the whole CLI for anything else (options first, completion, typos)."""
    if os.environ.get("_SECRETS_COMPLETE"):
        return full_app()
    word = args[0] if args else ""
    if word in ("", "--help", "-h"):
        # `secrets` alone or `--help` first: click shows the root help (eager) before it looks
        # at any command word; an unknown option is refused with the root's options alone.
        return listing_app()
    part = PART_OF.get(word)
    if part is None:
        return full_app()
    root = _new_app()
    part(root)
    root.registered_commands = [c for c in root.registered_commands if c.name == word]
    root.registered_groups = [g for g in root.registered_groups if g.name == word]
    return root


_full: typer.Typer | None = None


def __getattr__(name: str) -> typer.Typer:
    # `from commands.main import app`: the whole CLI, built on first use.
    global _full
    if name == "app":
        if _full is None:
            _full = full_app()
        return _full
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _exit_status(code: object) -> int:
    if code is None:
        return ExitCode.OK
    return code if isinstance(code, int) else ExitCode.ERROR


def _invoke(app: typer.Typer, failure: list[str]) -> int:
    from commands.exit_codes import for_error
    from commands.value_input import UsageProblem
    from ledger.errors import LedgerError

    try:
        # Standalone mode: Typer itself turns usage errors into exit code 2 and Ctrl-C into 1.
        # A fixed name: usage lines say `secrets`, and the completion variable is
        # _SECRETS_COMPLETE however the program was started (`python -m commands` too).
        app(prog_name="secrets")
    except PipeClosed:
        failure.append("PipeClosed")
        return PIPE_CLOSED
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
        import sqlite3

        from eventsourcing.persistence import PersistenceError

        storage = isinstance(exc, PersistenceError | sqlite3.DatabaseError)
        if storage and os.environ.get("SECRETS_LEDGER_DEBUG") != "1":
            failed = _storage_failure(exc)
            if failed is not None:
                # A full disk says nothing about the bytes already written: not damage.
                print(f"error: {failed}", file=sys.stderr)
                return ExitCode.ERROR
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            if any(sign in first for sign in _DAMAGE_SIGNS):
                from commands import runtime

                caches = runtime.damaged_views()
                if caches:
                    # The views are a cache of the log: never report them as the ledger.
                    print(
                        f"error: the views cache {', '.join(caches)} was damaged and is "
                        "removed; run the command again: it rebuilds the views from the log",
                        file=sys.stderr,
                    )
                    return ExitCode.ERROR
                # Opening reads only the header and schema; damage deeper in the file shows
                # here, when a command reads it.
                print(
                    f"error: the ledger file is damaged ({first}); "
                    "run `secrets audit verify` and restore from a backup",
                    file=sys.stderr,
                )
                return ExitCode.INTEGRITY_FAILURE
            from ledger.store.config_postgres import locked_out

            locked = locked_out(exc)
            if locked is not None:
                print(f"error: {locked}", file=sys.stderr)
                return ExitCode.ERROR
            # The event store failed mid-command (say, the PostgreSQL server went away).
            print(f"error: the event store failed: {first}", file=sys.stderr)
            return ExitCode.ERROR
        # Never a traceback by default: locals or arguments could hold a value.
        if os.environ.get("SECRETS_LEDGER_DEBUG") == "1":
            raise
        if type(exc).__name__ == "MapperDeserialisationError":
            # Matched by name: importing the library here would slow every command's start.
            print(f"error: {UNDECODABLE}", file=sys.stderr)
            sys.exit(ExitCode.INTEGRITY_FAILURE)
        print(
            f"internal error ({type(exc).__name__}); rerun with SECRETS_LEDGER_DEBUG=1 "
            "to see where",
            file=sys.stderr,
        )
        return ExitCode.ERROR
    return ExitCode.OK


def _storage_failure(exc: BaseException) -> Exception | None:
    """A full or failing disk under the home of a ledger the command opened (or the default
    home), as ledger/store/sqlite_file.py words it; None for any other storage error."""
    from commands import runtime
    from ledger.store.sqlite_file import storage_failure

    homes = [ledger.home for ledger in runtime.opened()] or [runtime.home_dir(None)]
    for home in homes:
        failed = storage_failure(exc, home)
        if failed is not None:
            return failed
    return None


# What SQLite says when a page it reads is not what it wrote.
_DAMAGE_SIGNS = ("malformed", "not a database", "disk image", "corrupt")


def run() -> None:
    from commands import oplog

    started = time.monotonic()
    app = app_for(sys.argv[1:])
    # The command words only: the rest of argv may hold a value (`--value`).
    operation = oplog.command_path(app, sys.argv[1:])
    failure: list[str] = []
    status: int = ExitCode.ERROR
    stdout_was = _stdout_file()
    try:
        status = _invoke(app, failure)
        if status != PIPE_CLOSED and not _flushed():
            failure.append("PipeClosed")  # what the command printed last met a closed pipe
            status = PIPE_CLOSED
    except SystemExit as exc:
        status = _exit_status(exc.code)
        if status != ExitCode.ERROR or not _swapped_for_devnull(stdout_was):
            raise
        failure.append("PipeClosed")
        status = PIPE_CLOSED
    finally:
        from commands import runtime

        runtime.report_post_commit_problems()
        runtime.close_opened()
        oplog.command_finished(operation, status, failure[0] if failure else None, started)
        if status == ExitCode.OK:
            runtime.exec_pending()  # `secrets run`: the program takes over this process
    if status == PIPE_CLOSED:
        from commands import pipe

        pipe.end()
    sys.exit(status)
