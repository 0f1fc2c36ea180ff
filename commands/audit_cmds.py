"""`secrets audit`: verify the history, sign checkpoints, read the audit log, replay the past."""

from __future__ import annotations

import functools
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from commands import runtime
from commands.options import CatalogueOpt, HomeOpt, Output, OutputOpt

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from ledger.application import SecretsLedger
    from ledger.integrity import IntegrityReport
    from projections.view_rows import AuditRow
    from projections.views import Views

audit_app = typer.Typer(
    help="Verify the ledger's history, sign checkpoints, read and replay the audit log.",
    no_args_is_help=True,
)


class LogOutput(StrEnum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


def _when(text: str | None, option: str) -> datetime | None:
    from commands.value_input import UsageProblem
    from projections.timefmt import parse_when

    if text is None:
        return None
    try:
        return parse_when(text)
    except ValueError as exc:
        raise UsageProblem(f"{option}: {exc}") from None


def _as_of(text: str | None) -> datetime | None:
    """`report compliance --as-of`: a span ago (7d) is that instant; a date or date-time means
    the end of the period it names, as `rotate-status --as-of` does, so the Q1 report
    `--as-of 2026-03-31` includes 31 March (it used to stop at its midnight)."""
    import re

    from commands.value_input import UsageProblem
    from ledger.errors import ValidationFailed
    from projections.compliance import parse_as_of

    if text is None or re.fullmatch(r"\s*\d{1,7}[smhdw]\s*", text):
        return _when(text, "--as-of")
    try:
        return parse_as_of(text)
    except ValidationFailed as exc:
        raise UsageProblem(str(exc)) from None


def _audit_code(code: str | None) -> str | None:
    """`--code` as catalogued (case-insensitive); an unknown code is a usage error, not 0 rows."""
    from commands.value_input import UsageProblem
    from projections.audit_codes import CODES

    if code is None:
        return None
    wanted = code.strip().upper()
    if wanted not in CODES:
        raise UsageProblem(f"--code: {code!r} is not an HBSE code (see `secrets audit codes`)")
    return wanted


# -- verify, checkpoints ------------------------------------------------------------------


def _pinned_key(pubkey: Path | None, label: str = "--pubkey") -> str | None:
    from commands.value_input import UsageProblem
    from ledger.checkpoint import public_hex_from_pem

    if pubkey is None:
        return None
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        return public_hex_from_pem(pubkey.read_bytes())
    except (OSError, ValueError, UnsupportedAlgorithm) as exc:
        raise UsageProblem(f"{label} {pubkey}: not a readable Ed25519 PEM key ({exc})") from None


def _shown(value: Any) -> str:
    """A field's value in a table: "-" for none (a secret that did not exist yet)."""
    return "-" if value is None else str(value)


def _verify_report(report: IntegrityReport, alarm: bool | None, output: Output) -> None:
    from ledger.errors import IntegrityFailure

    fault = report.fault
    if output is Output.json:
        runtime.emit_json(
            {
                "ok": fault is None,
                "events_checked": report.events_checked,
                "events_valid": report.events_valid,
                "checkpoints_checked": report.checkpoints_checked,
                "checkpoints_valid": report.checkpoints_valid,
                "snapshots_checked": report.snapshots_checked,
                "snapshots_valid": report.snapshots_valid,
                "last_position": report.last_position,
                "head": report.head.hex(),
                "public_key": report.public_key,
                "fault": None
                if fault is None
                else {"position": fault.position, "kind": fault.kind, "detail": fault.detail},
                "alarm_recorded": alarm,
            }
        )
    else:
        print(
            f"{report.events_valid}/{report.events_checked} events valid, "
            f"{report.checkpoints_valid}/{report.checkpoints_checked} checkpoints valid, "
            f"{report.snapshots_valid}/{report.snapshots_checked} snapshots valid"
        )
        if fault is not None:
            print(f"FAULT {fault.kind} at position {fault.position}: {fault.detail}")
            if report.events_valid < report.events_checked:
                # The counts above stop there too: they read like a total otherwise.
                print(
                    f"the walk stops at the first fault: events and checkpoints after "
                    f"position {fault.position} were not checked"
                )
            if alarm:
                print("an integrity alarm (HBSE-013) was recorded in the ledger")
    if fault is not None:
        if alarm is False:
            runtime.info("warning: the integrity alarm could not be recorded in the ledger")
        raise IntegrityFailure(f"history is not intact: {fault.kind} at position {fault.position}")


@audit_app.command("verify")
def verify(
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle",
            help="Verify an evidence export (from `secrets audit export --out DIR`) instead "
            "of the ledger; needs no session or keychain.",
        ),
    ] = None,
    pubkey: Annotated[
        Path | None,
        typer.Option("--pubkey", help="Require checkpoints signed by this PEM public key."),
    ] = None,
    home: HomeOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Check the hash chain, signed checkpoints and stored snapshots (exit 6 on a fault).

    Prints `N/N events valid, M/M checkpoints valid, S/S snapshots valid`; on a fault, the
    first bad position and its kind (edited, deleted, inserted, reordered, truncated,
    signature, snapshot), and records an integrity alarm (HBSE-013) in the ledger.

    Example: secrets audit verify --pubkey ledger-checkpoints.pem
    """
    pinned = _pinned_key(pubkey)
    if bundle is not None:
        _verify_bundle(bundle, pinned, output)
        return
    from ledger.checkpoint import Witness
    from projections.views import Views

    ledger = runtime.open_ledger(home)
    cred = runtime.credential(ledger)
    views = Views(ledger)
    try:
        # Not caught up first: the position the views reached before is evidence of how far
        # the log went, which a cut-off tail can no longer show.
        seen = views.position()
    finally:
        views.close()
    witnesses = [Witness("the views cache", seen)] if seen else []
    from projections.event_reader import undecodable_check

    report, alarm = ledger.audit_verify(cred, pinned, witnesses, undecodable_check(ledger.mapper))
    _verify_report(report, alarm, output)


def _verify_bundle(bundle: Path, pinned: str | None, output: Output) -> None:
    import shutil
    import sqlite3
    import tempfile

    from eventsourcing.persistence import PersistenceError

    from commands.value_input import UsageProblem
    from ledger.checkpoint import Witness
    from ledger.config import open_ledger
    from ledger.errors import IntegrityFailure, LedgerError

    if not (bundle / "ledger.sqlite").is_file():
        raise UsageProblem(f"--bundle {bundle}: no ledger.sqlite there")
    own = bundle / "pubkey.pem"
    auditor_pinned = pinned is not None
    own_key = None
    if own.is_file():
        try:
            own_key = _pinned_key(own, label="the bundle's pubkey.pem:")
        except UsageProblem:
            if not auditor_pinned:
                raise  # the auditor's key decides otherwise: the bundle's does not matter
    if auditor_pinned and own_key is not None and own_key != pinned:
        runtime.info(f"warning: {own} is not the key given with --pubkey: ignored")
    if pinned is None:
        pinned = own_key
    witnesses: list[Witness] = []
    note = bundle / "checkpoint.json"
    found = None
    if note.is_file():
        text = note.read_bytes().decode("utf-8", "replace")  # not UTF-8: not a witness
        found = Witness.loads("the bundle's checkpoint.json", text)
    if found is not None:
        witnesses.append(found)
    else:
        # Without the note nothing shows a tail cut off after the last checkpoint: say so.
        runtime.info(
            f"warning: {note} is missing or unreadable: a history cut off after its last "
            "checkpoint would not be detected"
        )
    with tempfile.TemporaryDirectory(prefix="secrets-bundle-") as scratch:
        # Evidence is never written to: verify a private copy (opening a store may create
        # tables or a WAL file).
        for part in ("ledger.sqlite", "ledger.sqlite-wal"):
            if (bundle / part).is_file():
                shutil.copyfile(bundle / part, Path(scratch) / part)
        try:
            # Explicitly this copy: a configured SECRETS_LEDGER_DATABASE_URL (a shared ledger)
            # must never be verified in place of the evidence.
            ledger = open_ledger(Path(scratch), private=False, database_url=f"sqlite://{scratch}")
        except LedgerError as exc:
            # Name the evidence, not the private copy.
            raise type(exc)(str(exc).replace(str(Path(scratch)), str(bundle))) from None
        ledger.checkpoint_every = 0
        try:
            ledger.check_pages()
            from projections.event_reader import undecodable_check

            report = ledger.verify_history(
                pinned, witnesses, decodes=undecodable_check(ledger.mapper)
            )
            if report.ok:
                report = ledger.with_snapshot_check(report)
        except (PersistenceError, sqlite3.DatabaseError) as exc:
            # Damage the header check and quick_check let through (text that is not UTF-8, a
            # page that reads but decodes wrongly): the evidence is not intact.
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise IntegrityFailure(f"{bundle / 'ledger.sqlite'} is damaged: {first}") from None
        except IntegrityFailure as exc:
            raise IntegrityFailure(str(exc).replace(str(Path(scratch)), str(bundle))) from None
        finally:
            ledger.close()
    if report.events_checked == 0:
        # An export always holds the ledger's first events and a checkpoint.
        raise IntegrityFailure(f"{bundle / 'ledger.sqlite'} holds no events: not an export")
    if report.ok and report.checkpoints_valid == 0:
        # An export signs a checkpoint; without one nothing vouches for the chain, which
        # anyone can recompute over edited events (whatever key is pinned).
        raise IntegrityFailure(f"{bundle / 'ledger.sqlite'} holds no signed checkpoint")
    if not auditor_pinned:
        _say_unpinned(report.public_key, own_key is not None)
    _verify_report(report, None, output)


def _say_unpinned(key: str | None, from_pem: bool) -> None:
    """A bundle checked against a key it brings itself proves only that whoever made it
    signed it: say so, and which key that was, every time."""
    from ledger.checkpoint import key_fingerprint

    if key is None:
        return
    whose = "the bundle's own pubkey.pem" if from_pem else "the key its first checkpoint names"
    runtime.info(
        f"warning: checkpoints checked against {whose}, fingerprint {key_fingerprint(key)}: "
        "the key is not pinned, so this shows only that whoever made the bundle signed it; "
        "pin the ledger's key with --pubkey FILE (`secrets audit pubkey` on the ledger "
        "prints it and its fingerprint)"
    )


@audit_app.command("checkpoint")
def checkpoint(
    reset_witness: Annotated[
        bool,
        typer.Option(
            "--reset-witness",
            help="After restoring a backup: let the keychain's checkpoint note follow the "
            "restored (shorter) log. Senior-engineer only; recorded as an integrity alarm.",
        ),
    ] = False,
    home: HomeOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Sign the current chain head with the ledger's checkpoint key (HBSE-015).

    Checkpoints are also written automatically every 1000 events
    (SECRETS_LEDGER_CHECKPOINT_EVERY; 0 turns that off).

    Example: secrets audit checkpoint
    """
    ledger = runtime.open_ledger(home)
    at, signed = ledger.checkpoint(runtime.credential(ledger), reset_witness=reset_witness)
    if output is Output.json:
        runtime.emit_json(
            {
                "sequence": signed.sequence,
                "position": signed.position,
                "head": signed.head,
                "recorded_at": at,
                "public_key": signed.public_key,
                "signature": signed.signature,
            }
        )
        return
    print(
        f"checkpoint #{signed.sequence} signs position {signed.position} "
        f"(head {signed.head[:16]}), recorded at {at}"
    )


@audit_app.command("pubkey")
def pubkey(home: HomeOpt = None) -> None:
    """Print the checkpoint public key (PEM), to pin with `audit verify --pubkey`.

    Example: secrets audit pubkey > ledger-checkpoints.pem
    """
    from ledger.checkpoint import key_fingerprint, public_pem

    ledger = runtime.open_ledger(home)
    key = ledger.checkpoint_public_key(runtime.credential(ledger))
    sys.stdout.write(public_pem(key))
    # What `audit verify --bundle` shows of the key it checked: compare it with this.
    runtime.info(f"fingerprint {key_fingerprint(key)}")


@audit_app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the evidence into.")],
    home: HomeOpt = None,
) -> None:
    """Export evidence: events (no values), hash chain, checkpoints and the public key.

    Signs a checkpoint now and writes ledger.sqlite (a consistent copy), pubkey.pem and
    checkpoint.json into DIR. An auditor checks it offline with `secrets audit verify --bundle DIR`.

    Example: secrets audit export --out /media/audit/2026-q1
    """
    from ledger.checkpoint import Witness, public_pem

    ledger = runtime.open_ledger(home)
    at, signed = ledger.checkpoint(runtime.credential(ledger), action="audit export")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = out / "ledger.sqlite"
    target.unlink(missing_ok=True)
    if ledger.location:
        _copy_shared_ledger(ledger, out, target)
    else:
        _backup(ledger.home / "ledger.sqlite", target)
    (out / "pubkey.pem").write_text(public_pem(signed.public_key))
    (out / "checkpoint.json").write_text(Witness("bundle", at, signed.signature).dumps() + "\n")
    print(f"evidence exported to {out} (checkpoint #{signed.sequence} at {at})")


def _backup(source_path: Path, target: Path) -> None:
    """A consistent copy of a SQLite ledger file, taken while writers may be active."""
    import sqlite3

    source = sqlite3.connect(source_path)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()


def _copy_shared_ledger(ledger: SecretsLedger, out: Path, target: Path) -> None:
    """A bundle is one SQLite file: a PostgreSQL ledger's events, positions and chain are
    copied into one (as `secrets ledger copy` does, verified before and after)."""
    import shutil
    import tempfile

    from ledger.config import open_ledger
    from ledger.copy import CopyableRecorder, copy_history

    work = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    try:
        staged = open_ledger(work, create=True, database_url=f"sqlite://{work}")
        try:
            source: CopyableRecorder = ledger.recorder  # type: ignore[assignment]
            copy_history(source, staged.recorder)  # type: ignore[arg-type]
        finally:
            staged.close()
        _backup(work / "ledger.sqlite", target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@audit_app.command("bundle", hidden=True, deprecated=True)
def bundle(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the evidence into.")],
    home: HomeOpt = None,
) -> None:
    """Deprecated name of `secrets audit export` (kept so existing scripts keep working).

    Example: secrets audit bundle --out /media/audit/2026-q1  (now: secrets audit export)
    """
    export(out=out, home=home)


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
        LogOutput, typer.Option("--output", "-o", help="table (newest first), json, jsonl, csv.")
    ] = LogOutput.table,
) -> None:
    """Show the audit log with HBSE codes (every role may read it).

    Table output is newest first; json, jsonl and csv are in ledger order.

    Example: secrets audit log --code HBSE-006 --since 24h
    """
    from ledger.policy import Permission
    from projections.timefmt import iso

    start, end = _when(since, "--since"), _when(until, "--until")
    code = _audit_code(code)
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
    newest = _faithful(views, lambda: views.audit(**filters, limit=limit, newest_first=True))
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
            fresh = _faithful(views, functools.partial(views.audit, **filters, after_position=last))
            if fresh:
                _emit_rows(fresh, output, header=False)
                last = fresh[-1].position
    except KeyboardInterrupt:
        return


def _faithful(views: Views, query: Callable[[], list[AuditRow]]) -> list[AuditRow]:
    """The rows of `query`, each checked against the event it claims to show
    (projections/audit_check.py). Rows that do not match mean the views cache was edited or
    damaged: it is rebuilt from the log, said on stderr, and the query asked again."""
    from ledger.errors import IntegrityFailure
    from projections.audit_check import check

    rows = query()
    found = check(views, rows)
    if found.unfaithful:
        runtime.info(
            f"warning: the views cache {views.path} held audit entries that are not what the "
            f"ledger recorded (positions {_positions(found.unfaithful)}): it was edited or "
            "damaged, and is rebuilt from the ledger's log"
        )
        views.rebuild()
        rows = query()
        found = check(views, rows)
        if found.unfaithful:
            raise IntegrityFailure(
                f"audit entries at positions {_positions(found.unfaithful)} do not match the "
                "recorded events even after a rebuild of the views: run `secrets audit verify`"
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


# -- the past -----------------------------------------------------------------------------


def _one_cut(at: str | None, position: int | None) -> datetime | None:
    """--at or --position, exactly one; the --at time parsed."""
    from commands.value_input import UsageProblem

    if (at is None) == (position is None):
        raise UsageProblem("give exactly one of --at and --position")
    return _when(at, "--at")


def _replay_state(
    ledger: Any, views: Any, at: datetime | None, position: int | None
) -> tuple[Any, list[int], int]:
    """The replayed snapshot, the positions left out of it (`_left_out`) and its cut."""
    from projections.replay import Replayer, snapshot
    from projections.timefmt import iso

    if at is not None:
        position = views.position_at(iso(at))
    assert position is not None
    if position > views.position():
        from commands.value_input import UsageProblem

        raise UsageProblem(
            f"--position {position} is past the last event of the log ({views.position()})"
        )
    replayer = Replayer(ledger, views.db, open_vault=True)
    state = replayer.at_position(position)
    return snapshot(state, at), _left_out(views, replayer, position), position


def _left_out(views: Any, replayer: Any, upto: int) -> list[int]:
    """Positions up to `upto` whose event could not be decoded, by the views when they
    applied it or by this replay: missing from the answer (JSON `left_out`)."""
    return sorted(set(replayer.skipped) | set(views.unreadable(upto)))


def _fail_if_left_out(bad: list[int], upto: int) -> None:
    """Once the answer is shown: exit 6 if events are missing from it, so that it does not
    pass for a clean one."""
    from ledger.errors import IntegrityFailure

    if bad:
        shown = ", ".join(str(p) for p in bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise IntegrityFailure(
            f"{len(bad)} event(s) up to position {upto} cannot be decoded and are left out "
            f"of this answer (position {shown}); run `secrets audit verify`"
        )


@audit_app.command("replay")
def replay(
    at: Annotated[
        str | None, typer.Option("--at", help="As of this time (ISO 8601, or 24h, 7d ago).")
    ] = None,
    position: Annotated[
        int | None, typer.Option("--position", min=0, help="As of this log position.")
    ] = None,
    catalogue: CatalogueOpt = None,
    home: HomeOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Show the whole ledger as it was: secrets with their compliance then, operators and roles,
    open sessions.

    "As of T" takes every event up to the last position stamped at or before T (timestamps
    come from each writer's clock; positions are the ledger's own order). Compliance is the
    rotation policy of `secrets rotate-status`, evaluated at T (at --position: at that event's
    time).

    Example: secrets audit replay --at 2026-01-31T00:00:00Z
    """
    from ledger.catalogue import load_catalogue
    from ledger.policy import Permission
    from projections.replay import with_compliance

    when = _one_cut(at, position)
    spec = load_catalogue(catalogue)
    ledger = runtime.open_ledger(home)
    ledger.authorize(runtime.credential(ledger), Permission.AUDIT, "audit replay")
    views = runtime.views(ledger)
    replayed, left_out, cut = _replay_state(ledger, views, when, position)
    doc = with_compliance(replayed, ledger, spec)
    if output is Output.json:
        runtime.emit_json({**doc, "left_out": left_out} if left_out else doc)
    else:
        _print_replay(doc)
    _fail_if_left_out(left_out, cut)


def _print_replay(doc: dict[str, Any]) -> None:
    print(f"As of position {doc['position']} ({doc['timestamp'] or 'empty ledger'})")
    print()
    print(
        runtime.table(
            [
                "ENVIRONMENT",
                "SERVICE",
                "NAME",
                "VERSION",
                "FINGERPRINT",
                "LAST ROTATION",
                "STATUS",
                "COMPLIANCE",
                "DUE",
            ],
            [
                [
                    s["environment"],
                    s["service"],
                    s["name"],
                    f"v{s['current_version']}",
                    f"[{s['fingerprint']}]",
                    s["last_rotation"] or "",
                    s["status"],
                    s["compliance"],
                    s["rotation_due"] or "-",
                ]
                for s in doc["secrets"]
            ],
        )
    )
    print()
    print(
        runtime.table(
            ["OPERATOR", "ROLE"], [[o["name"], o["role"] or "(revoked)"] for o in doc["operators"]]
        )
    )
    print()
    print(
        runtime.table(
            ["SESSION OF", "SESSION", "OPENED", "EXPIRES", "HOST"],
            [
                [s["operator"], s["session"], s["opened_at"], s["expires_at"], s["host"]]
                for s in doc["sessions"]
            ],
        )
    )


@audit_app.command("diff")
def diff(
    since: Annotated[str, typer.Option("--from", help="Earlier time (ISO 8601 or 7d ago).")],
    to: Annotated[str, typer.Option("--to", help="Later time (ISO 8601 or 1h ago).")],
    home: HomeOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """What changed between two times: secrets added, set, rotated, rolled back, deleted,
    restored, destroyed; roles granted and revoked; access denied (HBSE-006); sessions.

    Example: secrets audit diff --from 2026-01-01 --to 2026-02-01
    """
    from commands.value_input import UsageProblem
    from ledger.policy import Permission
    from projections.replay import Replayer, snapshot, window
    from projections.replay import diff as compare
    from projections.timefmt import iso

    start, end = _when(since, "--from"), _when(to, "--to")
    assert start is not None and end is not None
    if end < start:
        raise UsageProblem("--to is before --from")
    ledger = runtime.open_ledger(home)
    ledger.authorize(runtime.credential(ledger), Permission.AUDIT, "audit diff")
    views = runtime.views(ledger)
    replayer = Replayer(ledger, views.db, open_vault=True)
    state = replayer.at_position(views.position_at(iso(start)))
    before = snapshot(state, start)
    cut = views.position_at(iso(end))
    between = window(replayer, state, cut)
    doc = compare(before, snapshot(state, end), between)
    left_out = _left_out(views, replayer, cut)
    if output is Output.json:
        runtime.emit_json({**doc, "left_out": left_out} if left_out else doc)
    else:
        _print_diff(doc)
    _fail_if_left_out(left_out, cut)


def _print_diff(doc: dict[str, Any]) -> None:
    print(f"from position {doc['from']['position']} to {doc['to']['position']}")
    for s in doc["secrets"]:
        happened = ", ".join(
            f"{e['change']} v{e['version']}" if "version" in e else e["change"] for e in s["events"]
        )
        fields = ", ".join(
            f"{k} {_shown(v['from'])} -> {_shown(v['to'])}" for k, v in s["fields"].items()
        )
        print(
            f"  secret   {s['secret']}: {happened or s['change']}"
            + (f"; {fields}" if fields else "")
        )
    for r in doc["role_changes"]:
        print(f"  role     {r['operator']}: {r['change']} {r['role'] or '-'} (by {r['by']})")
    for d in doc["denials"]:
        target = f" {d['secret']}" if d["secret"] else ""
        print(f"  denied   {d['operator']}: {d['action']}{target} ({d['reason']})")
    for s in doc["sessions_opened"]:
        print(f"  login    {s['operator']} session {s['session']}")
    for s in doc["sessions_ended"]:
        print(f"  logout   {s['operator']} session {s['session']} (closed or expired)")
    sections = (
        "secrets",
        "operators",
        "role_changes",
        "denials",
        "sessions_opened",
        "sessions_ended",
    )
    if not any(doc[k] for k in sections):
        print("  no changes")


@audit_app.command("who-can")
def who_can(
    service: Annotated[str, typer.Option("--service", "-s", help="Service, e.g. nexus.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Key name.")],
    environment: Annotated[
        str,
        typer.Option(
            "--environment", "-e", envvar="SECRETS_LEDGER_ENVIRONMENT", help="Environment."
        ),
    ] = "default",
    at: Annotated[str | None, typer.Option("--at", help="As of this time (default: now).")] = None,
    home: HomeOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Who could read or change a secret, now or at a past time (roles as recorded then).

    Example: secrets audit who-can --service nexus --name mcp.bun.apiKey --at 2026-01-15
    """
    from ledger.policy import Permission
    from projections.replay import who_can as holders

    when = _when(at, "--at")
    ledger = runtime.open_ledger(home)
    ledger.authorize(runtime.credential(ledger), Permission.AUDIT, "audit who-can")
    views = runtime.views(ledger)
    position = None if when is not None else views.position()
    replayed, left_out, cut = _replay_state(ledger, views, when, position)
    doc = holders(replayed, environment, service, name)
    if not doc["exists"] and not left_out:
        from ledger.errors import NotFound

        raise NotFound(f"{doc['secret']} does not exist as of position {doc['position']}")
    if output is Output.json:
        runtime.emit_json({**doc, "left_out": left_out} if left_out else doc)
    else:
        state = doc["status"] or "does not exist"
        print(f"{doc['secret']} as of position {doc['position']}: {state}")
        print(
            runtime.table(
                ["OPERATOR", "ROLE", "CAN"],
                [[o["operator"], o["role"], ", ".join(o["can"])] for o in doc["operators"]],
            )
        )
    _fail_if_left_out(left_out, cut)


@audit_app.command("hash")
def hash_value(
    service: Annotated[str, typer.Option("--service", "-s", help="Service, e.g. nexus.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Key name.")],
    environment: Annotated[
        str,
        typer.Option(
            "--environment", "-e", envvar="SECRETS_LEDGER_ENVIRONMENT", help="Environment."
        ),
    ] = "default",
    home: HomeOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Print the fingerprint a value (read from stdin) would have, and which version has it.

    Needs the keychain (the fingerprint key lives there) and read access to the secret.

    Example: printf %s "$CANDIDATE" | secrets audit hash --service nexus --name mcp.bun.apiKey
    """
    from commands.value_input import read_value
    from ledger.errors import NotFound

    ledger = runtime.open_ledger(home)
    addr = runtime.address(environment, service, name)
    value = read_value(None, None, True, prompt="Value")
    cred = runtime.credential(ledger)
    fingerprint = ledger.fingerprint_for(cred, addr, value)
    try:
        recorded = list(ledger.history(cred, addr).versions.values())
    except NotFound:
        recorded = []
    matches = sorted(v.number for v in recorded if v.fingerprint == fingerprint)
    if output is Output.json:
        runtime.emit_json(
            {"secret": str(addr), "fingerprint": fingerprint[:12], "matching_versions": matches}
        )
        return
    found = ", ".join(f"v{n}" for n in matches) if matches else "no recorded version"
    print(f"[{fingerprint[:12]}] matches {found}")


# -- reports and projections --------------------------------------------------------------

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
    fmt: Annotated[ReportFormat, typer.Option("--format", help="md, json, csv or html.")] = (
        ReportFormat.md
    ),
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file.")] = None,
    home: HomeOpt = None,
) -> None:
    """Inventory, rotation status, emergency rotations, denials, validation failures, role
    holders and the integrity check, as of a date. Same ledger and date, same bytes.

    Example: secrets report compliance --as-of 2026-03-31 --format html --out q1.html
    """
    from ledger.policy import Permission
    from projections.reports import RENDERERS, build

    when = _as_of(as_of)
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
    from ledger.errors import IntegrityFailure
    from ledger.policy import Permission
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
    if views.digest() != before:
        raise IntegrityFailure(
            "the views rebuilt from the log differ from the ones built event by event: the "
            "log may have been altered since they were (run `secrets audit verify`); if it "
            "verifies, please report this"
        )
    print(f"rebuilt views from {applied} events in {time.monotonic() - started:.1f}s; identical")
