"""`secrets provision`: fill an environment from the catalogue."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from commands import runtime
from commands.options import CatalogueOpt, HomeOpt, Output, OutputOpt
from commands.rotation.shared import finish, open_rotator, progress, values_from

if TYPE_CHECKING:
    from ledger.rotation.runs import ProvisionReport


def provision(
    environment: Annotated[
        str, typer.Option("--environment", "-e", help="Environment to fill, e.g. production.")
    ],
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from", help="Values for external and identifier keys (TOML, JSON or dotenv)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be created; write nothing.")
    ] = False,
    catalogue: CatalogueOpt = None,
    home: HomeOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Create every catalogue key missing in an environment (idempotent).

    Generated kinds are generated; others come from --from or are listed as missing (exit 1).

    Example: secrets provision --environment production --from prod-values.toml
    """
    ledger = runtime.open_ledger(home)
    rotator = open_rotator(ledger, catalogue)
    values = values_from(from_file)
    cred = runtime.credential(ledger)
    with progress("provisioning") as shown:
        report = rotator.provision(
            cred,
            environment,
            values,
            dry_run=dry_run,
            on_progress=shown.step,
            on_plan=shown.plan,
        )
    if output is Output.json:
        runtime.emit_json(_provision_json(report))
    else:
        print("\n".join(_provision_lines(report)))
    finish(0 if report.complete else 1)


def _provision_json(report: ProvisionReport) -> dict[str, Any]:
    return {
        "environment": report.environment,
        "dry_run": report.dry_run,
        "complete": report.complete,
        "created": [
            {"address": a, "version": v or None, "fingerprint": fp or None}
            for a, v, fp in report.created
        ],
        "missing": report.missing,
        "present": report.present,
        "deleted": report.deleted,
        "ignored_values": report.ignored,
        "failed": [{"address": a, "error": why} for a, why in report.failed],
    }


def _provision_lines(report: ProvisionReport) -> list[str]:
    verb = "would create" if report.dry_run else "created"
    lines = [f"{verb:<12} {a}" + (f" v{v} [{fp}]" if v else "") for a, v, fp in report.created]
    lines += [f"missing      {a} (give it in --from)" for a in report.missing]
    lines += [f"present      {a}" for a in report.present]
    lines += [f"deleted      {a} (restore it or set it; not recreated)" for a in report.deleted]
    lines += [f"ignored      {a} (already present: use rotate)" for a in report.ignored]
    lines += [f"failed       {a}: {why}" for a, why in report.failed]
    prefix = "Dry run: " if report.dry_run else ""
    lines.append(
        f"{prefix}{len(report.created)} {verb}, {len(report.missing)} missing, "
        f"{len(report.present)} already present in {report.environment}"
    )
    return lines
