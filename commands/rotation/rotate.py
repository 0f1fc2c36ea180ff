"""`secrets rotate`: one secret, the overdue, or all; and `rotate-status`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from commands import runtime
from commands.options import CatalogueOpt, HomeOpt, IfVersionOpt, Output, OutputOpt
from commands.rotation.shared import (
    DEFAULT_ENV,
    ValuesFileOpt,
    batch_exit,
    batch_json,
    batch_lines,
    finish,
    open_rotator,
    progress,
    usage_value,
    values_from,
)

rotate_app = typer.Typer(no_args_is_help=False)


@rotate_app.callback(invoke_without_command=True)
def rotate(
    ctx: typer.Context,
    service: Annotated[
        str | None, typer.Option("--service", "-s", help="Rotate this one secret's service.")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Rotate this one secret's key name.")
    ] = None,
    environment: Annotated[
        str,
        typer.Option(
            "--environment",
            "-e",
            envvar="SECRETS_LEDGER_ENVIRONMENT",
            help="Environment of the one secret (batches cover every environment).",
        ),
    ] = DEFAULT_ENV,
    all_: Annotated[
        bool, typer.Option("--all", help="Rotate every secret, not only the due ones.")
    ] = False,
    values_file: ValuesFileOpt = None,
    partial: Annotated[
        bool,
        typer.Option("--partial", help="Rotate what can be rotated when some values are bad."),
    ] = False,
    fresh: Annotated[
        bool,
        typer.Option("--fresh", help="Start a new --all run instead of finishing an open one."),
    ] = False,
    value_file: Annotated[
        Path | None, typer.Option("--value-file", help="The one secret's new value, from a file.")
    ] = None,
    value_stdin: Annotated[
        bool, typer.Option("--value-stdin", help="The one secret's new value, from stdin.")
    ] = False,
    scheduled: Annotated[
        bool,
        typer.Option(
            "--scheduled",
            hidden=True,
            help="Record the run as the schedule's (the cron job and systemd timer pass it).",
        ),
    ] = False,
    if_version: IfVersionOpt = None,
    catalogue: CatalogueOpt = None,
    home: HomeOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Rotate secrets: every due one (default), every one (--all), or one (--service --name).

    Generated kinds get a fresh random value; external kinds need the provider's new value
    (--value-stdin / --value-file / prompt for one secret, --values-file for many) and are
    listed as still needing one otherwise (exit 1). An interrupted run is finished by running
    the same command again.

    Examples: secrets rotate; secrets rotate --all --values-file new.toml;
    printf %s "$KEY" | secrets rotate --service nexus --name mcp.bun.apiKey --value-stdin
    """
    from commands.value_input import UsageProblem

    if ctx.invoked_subcommand is not None:
        return
    single = service is not None or name is not None
    if single:
        if service is None or name is None:
            raise UsageProblem("give both --service and --name to rotate one secret")
        if all_ or values_file is not None or partial or fresh:
            raise UsageProblem("--all, --values-file, --partial and --fresh are for batches")
        _rotate_one(
            service, name, environment, value_file, value_stdin, catalogue, home, output, if_version
        )
        return
    if value_file is not None or value_stdin:
        raise UsageProblem("--value-file/--value-stdin need --service and --name")
    if if_version is not None:
        raise UsageProblem("--if-version needs --service and --name")
    _rotate_batch(
        "all" if all_ else "due", values_file, partial, fresh, scheduled, catalogue, home, output
    )


def _rotate_one(
    service: str,
    name: str,
    environment: str,
    value_file: Path | None,
    value_stdin: bool,
    catalogue: Path | None,
    home: Path | None,
    output: Output,
    if_version: int | None = None,
) -> None:
    from commands.value_input import read_value

    ledger = runtime.open_ledger(home)
    rotator = open_rotator(ledger, catalogue)
    addr = runtime.address(environment, service, name)
    cred = runtime.credential(ledger)
    value: str | None = None
    if value_file is not None or value_stdin or rotator.kind(addr) == "external":
        # Refuse before asking: no prompt for a value that could not be used.
        rotator.check_rotatable(cred, addr, if_version)
        value = read_value(
            None, value_file, value_stdin, prompt=f"New value for {addr}", address=str(addr)
        )
    added = rotator.rotate(cred, addr, value, if_version)
    if output is Output.json:
        runtime.emit_json(
            {
                "environment": addr.environment,
                "service": addr.service,
                "name": addr.name,
                "version": added.number,
                "fingerprint": added.short_fingerprint,
                "reason": added.reason,
            }
        )
        return
    print(f"{addr} v{added.number} [{added.short_fingerprint}] (rotation)")


def _rotate_batch(
    scope: str,
    values_file: Path | None,
    partial: bool,
    fresh: bool,
    scheduled: bool,
    catalogue: Path | None,
    home: Path | None,
    output: Output,
) -> None:
    ledger = runtime.open_ledger(home)
    rotator = open_rotator(ledger, catalogue)
    values = values_from(values_file)
    cred = runtime.credential(ledger)
    with progress("rotating") as shown:
        report = rotator.rotate_batch(
            cred,
            scope,
            values,
            partial=partial,
            fresh=fresh,
            trigger="schedule" if scheduled else "manual",
            on_progress=shown.step,
            on_plan=shown.plan,
        )
    if output is Output.json:
        runtime.emit_json(batch_json(report))
    else:
        lines = batch_lines(report)
        if lines:
            print("\n".join(lines))
        resumed = ", resumed" if report.resumed else ""
        print(
            f"Summary: {len(report.rotated)} rotated, {len(report.needs_value)} need a "
            f"provider-issued value, {len(report.failed)} failed, {len(report.rejected)} "
            f"rejected ({'every secret' if scope == 'all' else 'due secrets'}, "
            f"run {report.run_id[:12]}{resumed})"
        )
    finish(batch_exit(report))


def rotate_status(
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Evaluate at this ISO 8601 date (end of that day, UTC) or date-time, "
            "from the ledger's history as it stood then.",
            show_default=False,
        ),
    ] = None,
    environment: Annotated[
        str | None,
        typer.Option("--environment", "-e", help="Only this environment (default: all)."),
    ] = None,
    catalogue: CatalogueOpt = None,
    home: HomeOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Rotation compliance: last rotation, next due date, status, and every secret's state.

    Exit 0 when nothing is overdue or awaiting emergency rotation, 1 otherwise.

    Examples: secrets rotate-status; secrets rotate-status --as-of 2026-03-01 --output json
    """
    from commands.exit_codes import ExitCode
    from ledger import context
    from ledger.access.policy import Permission
    from ledger.rotation.catalogue import load_catalogue
    from projections.compliance import compliance, parse_as_of

    when = usage_value(parse_as_of, as_of) if as_of is not None else context.now()
    spec = load_catalogue(catalogue)
    ledger = runtime.open_ledger(home)
    ledger.authorize(runtime.credential(ledger), Permission.AUDIT, "rotate-status")
    report = compliance(ledger, spec, when, environment)
    if output is Output.json:
        runtime.emit_json(report.as_json())
    else:
        lines = report.header()
        if report.secrets:
            lines += [
                "",
                runtime.table(
                    ["SECRET", "KIND", "LAST ROTATION", "AGE", "DUE", "STATUS"], report.rows()
                ),
            ]
            if any(not a.catalogued for a in report.secrets):
                lines.append("* not in the catalogue: treated as external, 90/14 days")
        print("\n".join(lines))
    finish(ExitCode.OK if report.compliant else ExitCode.ERROR)
