"""`secrets dashboard`: access, rotation status, recent audit rows and a command reference.

A read of metadata only (see projections/dashboard.py): it never opens the keychain, so it
starts fast and works where the keychain is locked, e.g. in a tmux window.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from commands import runtime
from commands.options import CatalogueOpt, HomeOpt, Output, OutputOpt

if TYPE_CHECKING:
    from rich.console import RenderableType

    from projections.dashboard import Dashboard

TITLE = "Secrets Management Dashboard"


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)


def dashboard(
    ctx: typer.Context,
    watch: Annotated[
        float | None,
        typer.Option(
            "--watch",
            min=0.1,
            max=86400,
            metavar="SECONDS",
            help="Refresh in place every SECONDS until Ctrl-C.",
            show_default=False,
        ),
    ] = None,
    catalogue: CatalogueOpt = None,
    home: HomeOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Show access status, rotation status, the last 5 audit rows and the commands.

    Shows no secret value and reads no keychain, so anyone may open it; the access section
    says what the current session may do. Nothing is recorded in the ledger.

    Example: secrets dashboard --watch 5
    """
    from ledger import context
    from ledger.rotation.catalogue import load_catalogue
    from projections.dashboard import snapshot
    from projections.views import Views

    ledger = runtime.open_ledger(home)
    views = Views(ledger)  # `snapshot` catches it up before every look
    known = load_catalogue(catalogue)
    commands = command_reference(ctx)

    def build() -> Dashboard:
        # The credential is read again on every refresh: a login or logout in another
        # window shows up on the next one.
        return snapshot(ledger, runtime.credential(ledger), views, known, context.now())

    board = build()
    try:
        if output is Output.json:
            _json_loop(board, build, commands, watch)
        elif sys.stdout.isatty():
            _rich_loop(board, build, commands, watch, str(ledger.home))
        else:
            _plain_loop(board, build, commands, watch, str(ledger.home))
    except KeyboardInterrupt:
        # Ctrl-C is how one leaves a watching dashboard, even mid-refresh: a normal exit.
        if watch is None:
            raise


def command_reference(ctx: typer.Context) -> list[tuple[str, str]]:
    """(`secrets ...` usage, one-line help) for every visible command, read from the app itself
    so the reference never lists a command that does not exist. A group is one line naming its
    subcommands: the whole reference must fit a tmux window."""
    root: Any = ctx.find_root().command
    found: list[tuple[str, str]] = []
    for name in sorted(root.commands):
        cmd = root.commands[name]
        if getattr(cmd, "hidden", False):
            continue
        subcommands = getattr(cmd, "commands", None)
        if subcommands:
            names = [n for n in sorted(subcommands) if not subcommands[n].hidden]
            summary = cmd.get_short_help_str(limit=200).rstrip(".")
            # A group that also runs on its own (`rotate`) takes its subcommand optionally.
            word = "[COMMAND]" if getattr(cmd, "invoke_without_command", False) else "COMMAND"
            found.append((f"secrets {name} {word}", f"{summary} ({', '.join(names)})"))
        else:
            found.append((f"secrets {name}", cmd.get_short_help_str(limit=80)))
    return found


def _sleep_or_stop(interval: float) -> bool:
    """Sleep; False when the user pressed Ctrl-C (a normal way to leave, exit 0)."""
    try:
        time.sleep(interval)
    except KeyboardInterrupt:
        return False
    return True


def _refreshed(build: Any, previous: Dashboard) -> tuple[Dashboard, str]:
    from ledger.errors import LedgerError

    try:
        return build(), ""
    except LedgerError as exc:
        # A locked or briefly unavailable ledger should not close a watching window.
        return previous, f"refresh failed: {exc}"


def _json_loop(
    board: Dashboard, build: Any, commands: list[tuple[str, str]], watch: float | None
) -> None:
    import json

    def doc(b: Dashboard) -> dict[str, Any]:
        return {**b.as_json(), "commands": [{"usage": u, "help": h} for u, h in commands]}

    if watch is None:
        runtime.emit_json(doc(board))
        return
    # One document per line, so a consumer can read the stream line by line.
    while True:
        sys.stdout.write(json.dumps(doc(board), sort_keys=True) + "\n")
        sys.stdout.flush()
        if not _sleep_or_stop(watch):
            return
        board, _ = _refreshed(build, board)


def _plain_loop(
    board: Dashboard, build: Any, commands: list[tuple[str, str]], watch: float | None, home: str
) -> None:
    note = ""
    while True:
        sys.stdout.write(plain_text(board, commands, home, note) + "\n")
        sys.stdout.flush()
        if watch is None or not _sleep_or_stop(watch):
            return
        board, note = _refreshed(build, board)
        sys.stdout.write("\n")


def _rich_loop(
    board: Dashboard, build: Any, commands: list[tuple[str, str]], watch: float | None, home: str
) -> None:
    from rich.console import Console

    console = Console()
    if watch is None:
        console.print(rich_view(board, commands, home, ""))
        return
    from rich.live import Live

    note = ""
    try:
        # The alternate screen and one write per frame: no flicker, and the shell's screen
        # comes back untouched on exit.
        with Live(
            rich_view(board, commands, home, note),
            console=console,
            screen=True,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        ) as live:
            while _sleep_or_stop(watch):
                board, note = _refreshed(build, board)
                live.update(rich_view(board, commands, home, note), refresh=True)
    except KeyboardInterrupt:
        return


# -- rendering ---------------------------------------------------------------------------------


def _when(value: Any) -> str:
    from projections.timefmt import iso

    return iso(value) if value is not None else ""


def _access_lines(board: Dashboard) -> list[str]:
    a = board.access
    lines = [a.headline]
    if a.operator is not None:
        until = f", session until {_when(a.expires_at)}" if a.expires_at else " (token)"
        lines.append(f"Operator: {a.operator} ({a.role}){until}")
    if a.reason:
        lines.append(f"Why: {a.reason}")
    lines.append("May: " + ("; ".join(a.may) if a.may else "nothing until `secrets auth login`"))
    return lines


def _rotation_lines(board: Dashboard) -> list[str]:
    r = board.rotation
    last, due = r.last_rotation, r.next_due
    lines = [
        f"Last Rotation: {_when(last) if last else 'Never (no secret has a value yet)'}",
        f"Next Rotation Due: {_when(due) if due else 'N/A (nothing to rotate)'}",
        f"Compliance Status: {r.status_line}",
    ]
    worst = r.worst()
    width = max([9, *(len(s.status) for s in worst)])
    for s in worst:
        lines.append(f"  {s.status:<{width}} {s.address}  due {_when(s.due)}")
    return lines


def _log_rows(board: Dashboard) -> list[list[str]]:
    return [
        [r.timestamp, r.code, r.operator, r.action, r.target or "-", r.outcome]
        for r in board.recent
    ]


LOG_HEADERS = ["TIME", "CODE", "OPERATOR", "ACTION", "TARGET", "OUTCOME"]


def plain_text(board: Dashboard, commands: list[tuple[str, str]], home: str, note: str) -> str:
    out = [TITLE, "=" * len(TITLE), f"{_when(board.generated_at)}  ledger {home}"]
    if note:
        out.append(note)

    def section(title: str, body: list[str]) -> None:
        out.extend(["", title, "-" * len(title), *body])

    section("Access Status", _access_lines(board))
    section("Rotation Status", _rotation_lines(board))
    rows = _log_rows(board)
    section(
        "Recent Access Logs",
        runtime.table(LOG_HEADERS, rows).splitlines() if rows else ["No access logs yet"],
    )
    width = max((len(u) for u, _ in commands), default=0)
    section("Available Commands", [f"  {u.ljust(width)}  - {h}" for u, h in commands])
    return "\n".join(out)


def rich_view(
    board: Dashboard, commands: list[tuple[str, str]], home: str, note: str
) -> RenderableType:
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    header = Text.assemble(
        (f"🔐 {TITLE}", "bold"), ("  " + _when(board.generated_at) + f"  ledger {home}", "dim")
    )
    access = Text()
    for n, line in enumerate(_access_lines(board)):
        if n == 0:
            style = "bold green" if board.access.granted else "bold red"
            access.append(("✅ " if board.access.granted else "❌ ") + line + "\n", style)
        else:
            access.append(line + "\n")
    rotation = Text()
    status_style = "green" if board.rotation.compliant else "bold red"
    for line in _rotation_lines(board):
        style = status_style if line.startswith("Compliance Status") else ""
        rotation.append(line + "\n", style)
    logs: Any
    if board.recent:
        logs = Table(*LOG_HEADERS, box=None, pad_edge=False, header_style="bold")
        for row in _log_rows(board):
            outcome = row[-1]
            logs.add_row(*row[:-1], Text(outcome, "green" if outcome == "success" else "red"))
    else:
        logs = Text("No access logs yet")
    reference = Table(box=None, show_header=False, pad_edge=False)
    reference.add_column(style="cyan", no_wrap=True)
    reference.add_column()
    for usage, text in commands:
        reference.add_row(usage, text)
    access.rstrip()
    rotation.rstrip()
    parts: list[RenderableType] = [header]
    if note:
        parts.append(Text(note, "yellow"))
    parts += [
        Panel(access, title="Access Status", title_align="left"),
        Panel(rotation, title="🔄 Rotation Status", title_align="left"),
        Panel(logs, title="📋 Recent Access Logs", title_align="left"),
        Panel(reference, title="💻 Available Commands", title_align="left"),
    ]
    return Group(*parts)
