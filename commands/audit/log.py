"""`secrets audit log` and `audit codes`: the audit trail, each row checked against its event."""

from __future__ import annotations

import functools
import sys
import time
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from commands import runtime
from commands.audit.common import audit_app, audit_code, when_option
from commands.options import HomeOpt, Output, OutputOpt

if TYPE_CHECKING:
    from collections.abc import Callable

    from projections.view_rows import AuditRow
    from projections.views import Views


class LogOutput(StrEnum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


# -- the audit log ------------------------------------------------------------------------


_LOG_COLUMNS = ["TIME", "CODE", "OPERATOR", "ACTION", "TARGET", "OUTCOME", "DETAIL"]


def _cells(row: AuditRow) -> list[str]:
    return [
        row.timestamp,
        row.code,
        row.operator,
        row.action,
        row.target,
        row.outcome,
        row.detail,
    ]


def _emit_rows(rows: list[AuditRow], output: LogOutput, header: bool) -> None:
    import csv
    import json

    if output is LogOutput.jsonl:
        for row in rows:
            sys.stdout.write(json.dumps(row.as_json(), sort_keys=True) + "\n")
    elif output is LogOutput.csv:
        fields = list(rows[0].as_json()) if rows else _csv_fields()
        writer = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
        if header:
            writer.writeheader()
        for row in rows:
            writer.writerow(row.as_json())
    elif output is LogOutput.table:
        if header:
            print(runtime.table(_LOG_COLUMNS, [_cells(r) for r in rows]))
        else:
            for row in rows:
                print("  ".join(_cells(row)))
    sys.stdout.flush()


def _csv_fields() -> list[str]:
    from projections.view_rows import AuditRow

    return list(AuditRow(0, "", "", "", "", "", None, None, None, "", "", "").as_json())


@audit_app.command("log")
def log(
    since: Annotated[
        str | None, typer.Option("--since", help="From this time (ISO 8601, or 24h, 7d ago).")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Up to this time.")] = None,
    code: Annotated[
        str | None, typer.Option("--code", help="Only this code, e.g. HBSE-006.")
    ] = None,
    operator: Annotated[str | None, typer.Option("--operator", help="Only this operator.")] = None,
    service: Annotated[
        str | None, typer.Option("--service", "-s", help="Only this service.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Only this key name.")] = None,
    environment: Annotated[
        str | None, typer.Option("--environment", "-e", help="Only this environment.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Only the newest K entries.")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new entries until Ctrl-C.")
    ] = False,
    interval: Annotated[
        float,
        typer.Option("--interval", hidden=True, min=0.05, max=3600, help="Poll interval (s)."),
    ] = 1.0,
    home: HomeOpt = None,
    output: Annotated[
        LogOutput,
        typer.Option(
            "--output", "-o", help="table (newest first), json, jsonl, csv.", case_sensitive=False
        ),
    ] = LogOutput.table,
) -> None:
    """Show the audit log with HBSE codes (every role may read it).

    Table output is newest first; json, jsonl and csv are in ledger order.

    Example: secrets audit log --code HBSE-006 --since 24h
    """
    from ledger.access.policy import Permission
    from projections.timefmt import iso

    start, end = when_option(since, "--since"), when_option(until, "--until")
    code = audit_code(code)
    if follow and output is LogOutput.json:
        output = LogOutput.jsonl  # one document cannot grow; a stream of lines can
    ledger = runtime.open_ledger(home)
    ledger.authorize(runtime.credential(ledger), Permission.AUDIT, "audit log")
    views = runtime.views(ledger)
    filters: dict[str, Any] = {
        "code": code,
        "operator": operator,
        "service": service,
        "name": name,
        "environment": environment,
        "since": iso(start) if start else None,
        "until": iso(end) if end else None,
    }
    newest = _faithful(
        views,
        lambda: views.audit(**filters, limit=limit, newest_first=True),
        # Fewer than `limit` rows: every row that matches, from the first position on.
        lambda rows: rows[-1].position if limit is not None and len(rows) == limit else 1,
    )
    last = max((r.position for r in newest), default=views.position())
    if output is LogOutput.json:
        runtime.emit_json({"events": [r.as_json() for r in reversed(newest)]})
    elif output is LogOutput.table and not follow:
        if not newest:
            runtime.info("no matching audit entries")
            return
        _emit_rows(newest, output, header=True)
    else:
        _emit_rows(list(reversed(newest)), output, header=True)
    if not follow:
        return
    try:
        while True:
            time.sleep(interval)
            views.catch_up()
            fresh = _faithful(
                views,
                functools.partial(views.audit, **filters, after_position=last),
                functools.partial(lambda after, _: after + 1, last),
            )
            if fresh:
                _emit_rows(fresh, output, header=False)
                last = fresh[-1].position
    except KeyboardInterrupt:
        return


def _faithful(
    views: Views,
    query: Callable[[], list[AuditRow]],
    first: Callable[[list[AuditRow]], int],
) -> list[AuditRow]:
    """The rows of `query`, each checked against the event it claims to show, and none
    missing from the positions `first` gives for them on (projections/audit_check.py). Rows
    that do not match, or are missing, mean the views cache was edited or damaged: it is
    rebuilt from the log, said on stderr, and the query asked again."""
    from ledger.errors import IntegrityFailure
    from projections.audit_check import check, missing

    rows = query()
    found = check(views, rows)
    gone = missing(views, first(rows))
    if found.unfaithful or gone:
        held = (
            f"held audit entries that are not what the ledger recorded (positions "
            f"{_positions(found.unfaithful)})"
            if found.unfaithful
            else f"lacked the audit entries of recorded events (positions {_positions(gone)})"
        )
        runtime.info(
            f"warning: the views cache {views.path} {held}: it was edited or damaged, and is "
            "rebuilt from the ledger's log"
        )
        views.rebuild()
        rows = query()
        found = check(views, rows)
        gone = missing(views, first(rows))
        if found.unfaithful or gone:
            raise IntegrityFailure(
                f"audit entries at positions {_positions(found.unfaithful or gone)} do not "
                "match the recorded events even after a rebuild of the views: run "
                "`secrets audit verify`"
            )
    if found.undecodable:
        # Damage of the log since the views applied it: shown as the catch-up shows an event
        # it cannot decode, not as the entry it was.
        runtime.info(
            f"warning: the recorded events at positions {_positions(sorted(found.undecodable))} "
            "cannot be decoded any more: shown as unreadable; run `secrets audit verify`"
        )
        rows = [found.undecodable.get(r.position, r) for r in rows]
    return rows


def _positions(positions: list[int]) -> str:
    return ", ".join(str(p) for p in positions[:5]) + (" ..." if len(positions) > 5 else "")


@audit_app.command("codes")
def codes(output: OutputOpt = Output.table) -> None:
    """List the HBSE audit codes and the events each one covers.

    Example: secrets audit codes -o json
    """
    from projections.audit_codes import CODES, EVENT_CODES, REASON_CODES

    events: dict[str, list[str]] = {c: [] for c in CODES}
    for event, (code, _) in sorted(EVENT_CODES.items()):
        events[code].append(event)
    for reason, (code, _) in sorted(REASON_CODES.items()):
        events[code].append(f"Secret.VersionAdded(reason={reason})")
    if output is Output.json:
        runtime.emit_json(
            {
                "codes": [
                    {"code": c, "description": d, "events": sorted(events[c])}
                    for c, d in sorted(CODES.items())
                ]
            }
        )
        return
    print(runtime.table(["CODE", "MEANING"], [[c, d] for c, d in sorted(CODES.items())]))
