"""`secrets agent start|status|stop`: the optional agent that makes `get`, `versions` and
`list` start fast (commands/agent/server.py says how it works and what it refuses)."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer

from commands import runtime
from commands.agent import client as agent_client
from commands.exit_codes import ExitCode

agent_app = typer.Typer(
    help="Optional agent: keeps the CLI loaded so `get`, `versions` and `list` start fast.",
    no_args_is_help=True,
)


@agent_app.command("start")
def start(
    idle_minutes: Annotated[
        float,
        typer.Option(
            "--idle-minutes",
            min=0.05,
            max=1440,
            help="Stop after this many minutes without a command.",
        ),
    ] = 15.0,
    foreground: Annotated[
        bool, typer.Option("--foreground", help="Stay attached to the terminal (for a service).")
    ] = False,
) -> None:
    """Start the agent for this user and environment; it serves only callers with the same
    environment, and stops when idle, on `secrets agent stop`, or when the code is upgraded.

    Example: secrets agent start --idle-minutes 30
    """
    import subprocess

    from commands.agent import server as agent_server

    line = agent_server.command_line(idle_minutes * 60.0, foreground=foreground)
    if foreground:
        os.chdir("/")  # never import from the caller's directory
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(line[0], line)  # noqa: S606 - this interpreter, argv as a list
    started = subprocess.Popen(
        line,
        cwd="/",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # no controlling terminal: a hang-up does not stop it
    )
    assert started.stderr is not None
    first = started.stderr.readline().decode(errors="replace").strip()
    started.stderr.close()
    if first != agent_server.READY:
        started.wait()
        runtime.info(first or f"error: the agent exited ({started.returncode})")
        raise typer.Exit(ExitCode.ERROR)
    runtime.info(
        f"agent started (pid {started.pid}) at {agent_client.socket_path()}; "
        f"it stops after {idle_minutes:g} idle minutes"
    )


@agent_app.command("status")
def status() -> None:
    """Say whether an agent is running, since when, and how many commands it has run.

    Example: secrets agent status
    """
    found = _control("status")
    if found is None:
        runtime.info(f"no agent is running at {agent_client.socket_path()}")
        raise typer.Exit(ExitCode.NOT_FOUND)
    _refused(found)
    from datetime import UTC, datetime

    from projections.timefmt import iso

    started = iso(datetime.fromtimestamp(float(found["started"]), UTC))
    print(
        f"agent pid {found['pid']} at {found['socket']}: started {started}, "
        f"{found['served']} commands run, stops after "
        f"{float(found['idle_seconds']) / 60:g} idle minutes"
    )


@agent_app.command("stop")
def stop() -> None:
    """Stop the agent (nothing to do when none is running).

    Example: secrets agent stop
    """
    found = _control("stop")
    if found is None:
        runtime.info("no agent is running")
        return
    _refused(found)
    runtime.info(f"agent stopped (pid {found['stopped']})")


def _control(kind: str) -> dict[str, Any] | None:
    try:
        return agent_client.control(kind)
    except agent_client.AgentTrouble as exc:
        runtime.info(f"error: {exc}")
        raise typer.Exit(ExitCode.ERROR) from None


def _refused(reply: dict[str, object]) -> None:
    """An answer that is not what this version asked for: an agent of another version."""
    if "refused" in reply or not ({"pid", "stopped"} & set(reply)):
        pid = reply.get("pid", "?")
        runtime.info(
            f"error: the agent at {agent_client.socket_path()} (pid {pid}) is of another "
            f"version and answered: {reply.get('refused', reply)}; stop it with `kill {pid}`"
        )
        raise typer.Exit(ExitCode.ERROR)
