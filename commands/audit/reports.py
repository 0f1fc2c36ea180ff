"""`secrets report compliance`, `secrets report unused` and `secrets projections rebuild`."""

from __future__ import annotations

import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from commands import runtime
from commands.audit.common import as_of_option
from commands.options import HomeOpt, Output, OutputOpt

if TYPE_CHECKING:
    pass


report_app = typer.Typer(help="Compliance reports from the ledger.", no_args_is_help=True)
projections_app = typer.Typer(
    help="The read models (views) beside the ledger.", no_args_is_help=True
)


class ReportFormat(StrEnum):
    md = "md"
    json = "json"
    csv = "csv"
    html = "html"


@report_app.command("compliance")
def compliance(
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help=(
                "Report as of this date (the end of that day, UTC), date-time (the end of "
                "the minute, second or millisecond written) or span ago (7d). "
                "Default: the newest event."
            ),
        ),
    ] = None,
    fmt: Annotated[
        ReportFormat,
        typer.Option("--format", help="md, json, csv or html.", case_sensitive=False),
    ] = ReportFormat.md,
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file.")] = None,
    home: HomeOpt = None,
) -> None:
    """Inventory, rotation status, emergency rotations, denials, validation failures, role
    holders and the integrity check, as of a date. Same ledger and date, same bytes.

    Example: secrets report compliance --as-of 2026-03-31 --format html --out q1.html
    """
    from ledger.access.policy import Permission
    from projections.reports import RENDERERS, build

    when = as_of_option(as_of)
    ledger = runtime.open_ledger(home)
    ledger.authorize(runtime.credential(ledger), Permission.AUDIT, "report compliance")
    doc = build(ledger, as_of=when, integrity=ledger.verify_history())
    text = RENDERERS[fmt.value](doc)
    if out is None:
        sys.stdout.write(text)
        return
    out.write_text(text)
    runtime.info(f"report written to {out}")


@projections_app.command("rebuild")
def rebuild(home: HomeOpt = None) -> None:
    """Drop the views and rebuild them from the log, checking the result against the views as
    they were (progress on stderr).

    Example: secrets projections rebuild
    """
    from ledger.access.policy import Permission
    from ledger.errors import IntegrityFailure
    from projections.views import Views

    ledger = runtime.open_ledger(home)
    ledger.authorize(runtime.credential(ledger), Permission.MANAGE, "projections rebuild")
    # The rebuild saves replay states for later replays: only under the key (none: it saves
    # none, and a replay folds from the first event).
    ledger.replay_state_key(open_vault=True)
    views = Views(ledger)
    views.catch_up()
    before = views.digest()  # streamed: holds no rows, however long the log
    total = ledger.recorder.max_notification_id() or 0
    started = time.monotonic()

    def progress(done: int) -> None:
        print(f"\rrebuilding views: {done}/{total} events", end="", file=sys.stderr, flush=True)

    applied = views.rebuild(progress=progress)
    print(file=sys.stderr)
    elapsed = time.monotonic() - started
    if views.digest() != before:
        if views.unreadable(views.position()):
            # The log itself shows damage: events the rebuild could not decode.
            raise IntegrityFailure(
                "the views rebuilt from the log differ from the ones built event by event: "
                "the log may have been altered since they were (run `secrets audit verify`); "
                "if it verifies, please report this"
            )
        # Otherwise the views replaced are the suspect: a cache any writer of views.sqlite
        # can edit (one UPDATE of a views row made this exit 6 blaming the log). Said, and
        # `audit verify` tells whether the log changed.
        runtime.info(
            "warning: the views rebuilt from the log differ from the cache they replace: the "
            "cache was edited or damaged, or the log altered since it was built; run "
            "`secrets audit verify` to check the log"
        )
        print(f"rebuilt views from {applied} events in {elapsed:.1f}s; they differ from the cache")
        return
    print(f"rebuilt views from {applied} events in {elapsed:.1f}s; identical")


@report_app.command("unused")
def unused_report(
    since: Annotated[
        str,
        typer.Option(
            "--since",
            help="The window: a span before --as-of (90d, 12w) or a date; a read after it "
            "counts as use.",
        ),
    ] = "90d",
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="As the ledger stood at this date (the end of that day, UTC), date-time or "
            "span ago (7d). Default: now.",
        ),
    ] = None,
    environment: Annotated[
        str | None, typer.Option("--environment", "-e", help="Only this environment.")
    ] = None,
    home: HomeOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Secrets nobody read in the window (`get` of any version): candidates for deletion.
    Lists the secrets live at --as-of whose newest read up to then is before the window,
    or that were never read.

    Example: secrets report unused --since 90d --as-of 2026-03-31
    """
    from ledger import context
    from ledger.access.policy import Permission
    from projections.timefmt import iso, parse_when
    from projections.unused import unused

    when = as_of_option(as_of) or context.now()
    try:
        start = parse_when(since, now=when)
    except ValueError as exc:
        from commands.value_input import UsageProblem

        raise UsageProblem(f"--since: {exc}") from None
    ledger = runtime.open_ledger(home)
    ledger.authorize(runtime.credential(ledger), Permission.AUDIT, "report unused")
    report = unused(ledger, when, start, environment)
    if output is Output.json:
        runtime.emit_json(report.as_json())
        return
    runtime.info(
        f"{len(report.secrets)} of {report.live} secrets not read between {iso(report.since)} "
        f"and {iso(report.as_of)}"
    )
    if report.secrets:
        print(
            runtime.table(
                ["ENVIRONMENT", "SERVICE", "NAME", "REGISTERED", "LAST READ", "BY"],
                [
                    [
                        s.environment,
                        s.service,
                        s.name,
                        iso(s.registered),
                        iso(s.last_read) if s.last_read else "never",
                        s.last_reader or "",
                    ]
                    for s in report.secrets
                ],
            )
        )
