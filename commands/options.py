"""Options shared by every command, as `Annotated` types."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from commands import runtime


class Output(StrEnum):
    table = "table"
    json = "json"


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
    ),
]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="Output format: table or json.")]
ServiceOpt = Annotated[str, typer.Option("--service", "-s", help="Service, e.g. nexus.")]
NameOpt = Annotated[str, typer.Option("--name", "-n", help="Key name, e.g. mcp.bun.apiKey.")]


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
