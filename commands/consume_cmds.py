"""The consumer commands: `run`, `export`, `inject` hand a program many secrets from one
process, one authorisation and one keychain opening; every value read is its own recorded
read naming the run (docs/consumers.md)."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from commands import runtime
from commands.options import DatabaseUrlOpt, EnvironmentOpt, HomeOpt, complete_service

if TYPE_CHECKING:
    from ledger.address import SecretAddress
    from ledger.application import SecretsLedger

ServicesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--service",
        "-s",
        help="Every secret of this service (repeatable).",
        autocompletion=complete_service,
        show_default=False,
    ),
]
MapOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        help="VAR=SERVICE/NAME: this secret under this variable name (repeatable).",
        show_default=False,
    ),
]


class Format(StrEnum):
    dotenv = "dotenv"
    json = "json"
    shell = "shell"


def register(app: typer.Typer) -> None:
    app.command("run", context_settings={"allow_interspersed_args": False})(run)
    app.command("export")(export)
    app.command("inject")(inject)


def _purpose(kind: str) -> str:
    from ledger import context

    # The command's correlation id (in its log line too), short enough for the audit log.
    return f"{kind} {context.correlation_id()[:12]}"


def _selection(
    ledger: SecretsLedger, environment: str, services: list[str], maps: list[str]
) -> list[tuple[str, SecretAddress]]:
    from commands.consume_env import assign, parse_map
    from commands.value_input import UsageProblem

    if not services and not maps:
        raise UsageProblem("select secrets with --service SERVICE or --map VAR=SERVICE/NAME")
    mapped = []
    for text in maps:
        found = parse_map(text)
        mapped.append((found.variable, runtime.address(environment, found.service, found.name)))
    for service in services:
        runtime.address(environment, service, "name")  # a bad service name fails as for `get`
    selected: list[SecretAddress] = []
    if services:
        wanted = set(services)
        rows = runtime.views(ledger).secrets(environment)
        for row in rows:
            if row.service in wanted and not row.deleted and not row.destroyed:
                selected.append(runtime.address(row.environment, row.service, row.name))
        empty = sorted(wanted - {a.service for a in selected})
        if empty:
            from ledger.errors import NotFound

            raise NotFound(f"no secrets of service {', '.join(empty)} in {environment}")
    return assign(selected, mapped)


def _read(
    environment: str, services: list[str], maps: list[str], home: Path | None, kind: str
) -> list[tuple[str, str]]:
    """(variable, value) of the selection, every read recorded; fails before any is."""
    from ledger.services.bulk_read import read_many

    ledger = runtime.open_ledger(home)
    cred = runtime.credential(ledger)
    pairs = _selection(ledger, environment, services, maps)
    read = read_many(ledger, cred, [a for _, a in pairs], kind, _purpose(kind))
    return [(variable, got.value) for (variable, _), got in zip(pairs, read, strict=True)]


def run(
    command: Annotated[list[str], typer.Argument(help="The program and its arguments, after --.")],
    environment: EnvironmentOpt = "default",
    service: ServicesOpt = None,
    map_: MapOpt = None,
    home: HomeOpt = None,
    database_url: DatabaseUrlOpt = None,
) -> None:
    """Start a program with secrets added to its environment.

    Each secret's variable is its key name uppercased, every character outside A-Z 0-9 an
    underscore (mcp.bun.apiKey -> MCP_BUN_APIKEY), or the one --map gives it; a clash or an
    invalid name is a usage error before anything is read. The reads are recorded (naming the
    run), then the program replaces this process (exec): its exit status is the command's,
    signals reach it directly, and no value is written anywhere.

    Example: secrets run -e production --service nexus -- node server.js
    """
    import shutil

    from commands.value_input import UsageProblem
    from ledger.errors import ValidationFailed

    if not command:
        raise UsageProblem("no program to run: secrets run [OPTIONS] -- CMD ARGS...")
    program = command[0]
    if shutil.which(program, path=os.environ.get("PATH", os.defpath)) is None:
        raise UsageProblem(f"no such program: {program!r}")
    values = _read(environment, service or [], map_ or [], home, "run")
    held = [variable for variable, value in values if "\x00" in value]
    if held:
        # exec would refuse the whole environment; no variable can hold one.
        raise ValidationFailed(
            "env-value", f"the value for {', '.join(held)} holds a NUL character"
        )
    child = dict(os.environ)
    child.update(values)
    runtime.exec_after(command, child)


def export(
    format_: Annotated[
        Format, typer.Option("--format", "-f", help="dotenv, json or shell (export VAR=...).")
    ],
    environment: EnvironmentOpt = "default",
    service: ServicesOpt = None,
    map_: MapOpt = None,
    home: HomeOpt = None,
    database_url: DatabaseUrlOpt = None,
) -> None:
    """Print secrets as environment variables on stdout, quoted for the format.

    Names as for `secrets run`. Every value read is recorded, naming the export. `shell`
    output is read back exactly by `set -a; . FILE` or `eval`; `dotenv` by python-dotenv
    (and by a shell unless a value holds both a quote or backslash and a `$` or backtick).

    Example: secrets export -e staging --service nexus --format dotenv > .env
    """
    from commands.consume_env import render

    values = _read(environment, service or [], map_ or [], home, "export")
    sys.stdout.write(render(values, str(format_)))


def inject(
    template: Annotated[
        Path, typer.Option("--in", help="Template with {{ secrets://ENV/SERVICE/NAME }}.")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write here (created 0600, atomically) instead of stdout.",
            show_default=False,
        ),
    ] = None,
    home: HomeOpt = None,
    database_url: DatabaseUrlOpt = None,
) -> None:
    """Fill a template's secret references with their current values.

    A reference is {{ secrets://ENV/SERVICE/NAME }}, or {{ secrets://SERVICE/NAME }} in the
    default environment. Every reference is resolved and every read recorded before anything
    is written; an unknown one fails with nothing written.

    Example: secrets inject --in config.tmpl --out config.yml
    """
    from commands.inject_template import check_writable, fill, references, write_private
    from ledger.services.bulk_read import read_many

    text = _template_text(template)
    addresses = references(text)
    if out is not None:
        check_writable(out)
    ledger = runtime.open_ledger(home)
    cred = runtime.credential(ledger)
    unique = sorted(set(addresses))
    read = read_many(ledger, cred, unique, "inject", _purpose("inject"))
    filled = fill(text, {got.address: got.value for got in read})
    if out is None:
        sys.stdout.write(filled)
        return
    write_private(out, filled)
    runtime.info(f"wrote {out} ({len(unique)} secrets)")


def _template_text(path: Path) -> str:
    from commands.value_input import UsageProblem

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageProblem(f"--in {path}: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageProblem(f"--in {path}: not UTF-8 text") from None
