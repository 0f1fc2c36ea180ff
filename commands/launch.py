"""The `secrets` entry point: a read command goes to a running `secrets agent` when there is
one for this user and environment, else (and for everything else) to the CLI in this process.

Kept to what the interpreter has loaded at start-up: the point of the agent is to spare a
short command the import of typer, eventsourcing and keyring."""

from __future__ import annotations

import os
import sys


def run() -> None:
    # Started with a standard stream closed (`<&-`, `>&-`): Python leaves it None and every
    # use would be an internal error. It reads and writes as /dev/null, as `>/dev/null`
    # would have it; each open takes the lowest free descriptor, the closed stream's own.
    if sys.stdin is None:
        sys.stdin = open(os.devnull)  # noqa: SIM115
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    if len(sys.argv) > 1 and sys.argv[1].startswith("secrets:"):
        from commands import aliases  # the operating guide's names, only when one is used

        sys.argv[1:] = aliases.resolve(sys.argv[1:])
    from commands.agent import client as agent_client

    try:
        status = agent_client.run_by_agent(sys.argv[1:])
    except agent_client.AgentLost as lost:
        from commands.exit_codes import ExitCode

        print(
            f"error: the agent at {lost} stopped before the command finished; it may have run "
            "(see `secrets audit log`)",
            file=sys.stderr,
        )
        sys.exit(ExitCode.ERROR)
    except KeyboardInterrupt:
        from commands.exit_codes import ExitCode

        # Leaving closes the connection: the agent interrupts the command (SIGINT), which
        # says "interrupted" itself, as it would have in this process.
        sys.exit(ExitCode.INTERRUPTED)
    if status is not None:
        sys.exit(status)
    from commands.main import run as run_here

    run_here()
