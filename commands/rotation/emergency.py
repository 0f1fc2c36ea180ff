"""`secrets emergency-rotate`: everything now, other sessions ended, an incident recorded."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from commands import runtime
from commands.options import CatalogueOpt, HomeOpt, Output, OutputOpt
from commands.rotation.shared import (
    ValuesFileOpt,
    batch_exit,
    batch_json,
    finish,
    open_rotator,
    progress,
    values_from,
)


def emergency_rotate(
    reason: Annotated[
        str, typer.Option("--reason", help="Why (recorded on the incident).")
    ] = "emergency rotation",
    values_file: ValuesFileOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    catalogue: CatalogueOpt = None,
    home: HomeOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """If secrets are compromised: rotate everything now and end other sessions.

    Senior-engineer only. Every secret is rotated under one incident (reason emergency) and
    every operator session except the caller's is ended.

    External kinds are listed as needing a provider-issued value; run again with
    --values-file to finish the same incident.

    Example: secrets emergency-rotate --reason "laptop stolen"
    """
    ledger = runtime.open_ledger(home)
    rotator = open_rotator(ledger, catalogue)
    values = values_from(values_file)
    cred = runtime.credential(ledger)
    if not yes and sys.stdin.isatty() and sys.stderr.isatty():
        typer.confirm(
            "Rotate EVERY secret now and end every other operator session?",
            abort=True,
            err=True,
        )
    with progress("emergency rotation") as shown:
        report = rotator.emergency(cred, reason, values, on_progress=shown.step, on_plan=shown.plan)
    if output is Output.json:
        runtime.emit_json(batch_json(report))
    else:
        resumed = " (resumed)" if report.resumed else ""
        print(f"Incident {report.incident_id}{resumed}: {reason}")
        print(f"Sessions ended: {report.sessions_closed}")
        print(f"Rotated: {len(report.rotated)}")
        for a, v, fp in report.rotated:
            print(f"  {a} v{v} [{fp}]")
        print(f"Needing a provider-issued value: {len(report.needs_value)}")
        for a in report.needs_value:
            print(f"  {a}")
        print(f"Failed: {len(report.failed) + len(report.rejected)}")
        for a, why in report.failed:
            print(f"  {a}: {why}")
        for a, rule in report.rejected:
            print(f"  {a}: value rejected (rule {rule})")
        if report.needs_value:
            print(
                "next: obtain new values from the providers, then "
                "secrets emergency-rotate --values-file FILE"
            )
    finish(batch_exit(report))
