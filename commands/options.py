"""Options shared by every command, as `Annotated` types."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from commands import runtime


def _completer(column: str) -> Callable[[typer.Context, str], list[str]]:
    """A Typer completion callback for `column`, using the options already on the line."""

    def complete(ctx: typer.Context, incomplete: str) -> list[str]:
        try:
            from commands.runtime import home_dir
            from projections.completion import known_values

            params = ctx.params
            home = home_dir(params.get("home"))
            return known_values(
                home,
                column,  # type: ignore[arg-type]
                incomplete,
                environment=params.get("environment"),
                service=params.get("service") if column == "name" else None,
                database_url=params.get("database_url"),
            )
        except Exception:  # a completion must never break the user's shell
            return []

    return complete


complete_environment = _completer("environment")
complete_service = _completer("service")
complete_name = _completer("name")


class Output(StrEnum):
    table = "table"
    json = "json"


# The team catalogue (docs/rotation.md): every command that applies the rotation policy.
CatalogueOpt = Annotated[
    Path | None,
    typer.Option(
        "--catalogue",
        envvar="SECRETS_LEDGER_CATALOGUE",
        help="Team catalogue file (TOML) adding or overriding known keys and their policy.",
        show_default=False,
    ),
]
HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home",
        envvar="SECRETS_LEDGER_HOME",
        help="Directory holding the ledger (default: $XDG_DATA_HOME/secrets-ledger).",
        show_default=False,
    ),
]
EnvironmentOpt = Annotated[
    str,
    typer.Option(
        "--environment",
        "-e",
        envvar="SECRETS_LEDGER_ENVIRONMENT",
        help="Environment the secret belongs to (production, staging, ...).",
        autocompletion=complete_environment,
    ),
]
OutputOpt = Annotated[
    Output,
    typer.Option("--output", "-o", help="Output format: table or json.", case_sensitive=False),
]
ServiceOpt = Annotated[
    str,
    typer.Option("--service", "-s", help="Service, e.g. nexus.", autocompletion=complete_service),
]
NameOpt = Annotated[
    str,
    typer.Option(
        "--name", "-n", help="Key name, e.g. mcp.bun.apiKey.", autocompletion=complete_name
    ),
]

IfVersionOpt = Annotated[
    int | None,
    typer.Option(
        "--if-version",
        min=0,
        help="Write only if the current version is this one (0: none yet); else exit 7.",
    ),
]


def _use_database_url(value: str | None) -> str | None:
    # Remembered for the whole command: every ledger it opens uses the same store.
    runtime.use_database_url(value)
    return value


DatabaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="SECRETS_LEDGER_DATABASE_URL",
        callback=_use_database_url,
        help=(
            "Event store URL: postgresql://user@host:port/db for a shared PostgreSQL ledger "
            "(password from PGPASSWORD or ~/.pgpass rather than the URL). Default: the SQLite "
            "ledger in --home."
        ),
        show_default=False,
        show_envvar=True,
    ),
]
