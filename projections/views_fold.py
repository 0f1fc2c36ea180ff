"""What each event does to the views: the secret and operator rows it changes and the audit
row it gives, chosen by the event's class (`_HANDLERS`; tests/unit/test_views.py checks that
every stored event class has one).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ledger.operator import Operator
from ledger.records import (
    Denial,
    GrantRejection,
    Incident,
    IntegrityAlarm,
    ReadReceipt,
    Rejection,
)
from ledger.rotation_records import RotationRun, ScheduleChange
from ledger.secret import Secret
from ledger.settings import LedgerSettings
from projections import secret_summary, views_schema
from projections.audit_codes import EVENT_CODES, REASON_CODES
from projections.event_reader import READ_ACTION, READ_CODE, EventReader, read_detail
from projections.views_schema import ViewsDatabase

if TYPE_CHECKING:
    from ledger.application import SecretsLedger

# An event's audit row parts a handler gives: (target, outcome, detail, action, code).
Target = tuple[str | None, str | None, str | None]
Applied = tuple[Target, str, str, str, str]
Handler = Callable[["ViewsFold", sqlite3.Cursor, Any, str, str, str], Applied]


class ViewsFold(ViewsDatabase):
    """Applying events to the views (the part of `Views` the catch-up calls per event)."""

    ledger: SecretsLedger
    _reader: EventReader
    # originator id -> (environment, service, name): a secret's id is derived from its
    # address, so an entry never goes stale; saves a query per secret event.
    _addresses: dict[str, tuple[str, str, str]]
    # operator originator id -> name: the id is derived from the name (ledger.operator).
    _operator_names: dict[str, str]

    # -- folding --------------------------------------------------------------------------

    @staticmethod
    def _note_times(cur: sqlite3.Cursor, start: int, audit_rows: list[tuple[Any, ...]]) -> None:
        """Keep `audit_time_blocks` for a page of audit rows (read after position `start`)."""
        if cur.execute("SELECT since FROM audit_time_coverage").fetchone() is None:
            cur.execute("INSERT INTO audit_time_coverage VALUES (?)", (start + 1,))
        earliest: dict[int, str] = {}
        for row in audit_rows:
            position, ts = row[0], row[1]
            if ts:
                block = position // views_schema.TIME_BLOCK
                if block not in earliest or ts < earliest[block]:
                    earliest[block] = ts
        cur.executemany(
            "INSERT INTO audit_time_blocks VALUES (?, ?) ON CONFLICT(block) DO UPDATE "
            "SET earliest = min(earliest, excluded.earliest)",
            list(earliest.items()),
        )

    @staticmethod
    def _note_reads(cur: sqlite3.Cursor, audit_rows: list[tuple[Any, ...]]) -> None:
        """Each secret's last read, from a page's audit rows: taken from the rows rather than
        in `_apply`, because a rebuild gets the rows of reads ready-made (rebuild_feed.py)."""
        last: dict[tuple[Any, Any, Any], tuple[Any, Any, int | None]] = {}
        for row in audit_rows:
            if row[2] == READ_CODE and row[3] == _SECRET_READ_KIND:
                detail = row[11]
                version = int(detail[1:]) if detail[1:].isdigit() else None
                last[(row[6], row[7], row[8])] = (row[1], row[4], version)
        cur.executemany(
            "UPDATE secrets_view SET last_read = ?, last_reader = ?, last_read_version = ? "
            "WHERE environment = ? AND service = ? AND name = ?",
            [(*read, *address) for address, read in last.items()],
        )

    @staticmethod
    def _unreadable(position: int, topic: object) -> tuple[Any, ...]:
        """The audit row shown in place of an event that cannot be decoded (whose topic may
        be a BLOB, a number or NULL in a damaged file)."""
        kind = topic.rpartition(":")[2] if isinstance(topic, str) else "?"
        return (
            position,
            "",
            "HBSE-013",
            kind,
            "",
            "unreadable",
            None,
            None,
            None,
            "failed",
            "",
            "event cannot be decoded; run `secrets audit verify`",
        )

    def _apply(self, cur: sqlite3.Cursor, position: int, event: Any, ts: str) -> tuple[Any, ...]:
        """Fold one event into the secret and operator views; return its audit row (the
        caller inserts the page's audit rows together). `ts` is `iso(event.timestamp)`.
        The handler is chosen by the event's class (`_HANDLERS`)."""
        cls = type(event)
        kind = cls.__qualname__
        operator = getattr(event, "operator", "")
        if cls is _SECRET_READ:
            # Most of any log (72% of the generated one): no view but the audit row.
            return (
                position,
                ts,
                READ_CODE,
                kind,
                operator,
                READ_ACTION,
                event.environment,
                event.service,
                event.name,
                "success",
                getattr(event, "correlation_id", ""),
                read_detail(event.version, getattr(event, "purpose", None)),
            )
        code, action = EVENT_CODES.get(kind, ("HBSE-000", kind))
        handler = _HANDLERS.get(cls)
        if handler is None:
            handler = handlers().get(cls, _audit_only)
        target, outcome, detail, action, code = handler(self, cur, event, ts, action, code)
        return (
            position,
            ts,
            code,
            kind,
            operator,
            action,
            *target,
            outcome,
            getattr(event, "correlation_id", ""),
            detail,
        )

    def _operator_name(self, cur: sqlite3.Cursor, oid: str) -> str:
        """The operator's name as operators_view holds it, or its id if not registered."""
        found = self._operator_names.get(oid)
        if found is not None:
            return found
        row = cur.execute(
            "SELECT name FROM operators_view WHERE originator_id = ?", (oid,)
        ).fetchone()
        if row is None:
            return oid
        name: str = row[0]
        self._operator_names[oid] = name
        return name

    def _secret_address(
        self, cur: sqlite3.Cursor, oid: str
    ) -> tuple[str | None, str | None, str | None]:
        found = self._addresses.get(oid)
        if found is not None:
            return found
        row = cur.execute(
            "SELECT environment, service, name FROM secrets_view WHERE originator_id = ?", (oid,)
        ).fetchone()
        if row is None:
            return (None, None, None)
        self._addresses[oid] = (row[0], row[1], row[2])
        return self._addresses[oid]


# -- what each event class does to the views --------------------------------------------------
# A handler takes (views, cursor, event, ts, action, code) and gives (target, outcome, detail,
# action, code) of the event's audit row, after changing the secret and operator views.
_NO_TARGET: Target = (None, None, None)
_SECRET_READ: type[Any] = ReadReceipt.SecretRead  # type: ignore[attr-defined]
_SECRET_READ_KIND = _SECRET_READ.__qualname__


def _audit_only(
    views: ViewsFold, cur: sqlite3.Cursor, event: Any, ts: str, action: str, code: str
) -> Applied:
    return _NO_TARGET, "success", "", action, code


def _secret_registered(
    views: ViewsFold, cur: sqlite3.Cursor, event: Any, ts: str, action: str, code: str
) -> Applied:
    oid = event.originator_id.hex
    cur.execute(
        "INSERT OR IGNORE INTO secrets_view (originator_id, environment, service, "
        "name) VALUES (?, ?, ?, ?)",
        (oid, event.environment, event.service, event.name),
    )
    return views._secret_address(cur, oid), "success", "", action, code


def _version_added(
    views: ViewsFold, cur: sqlite3.Cursor, event: Any, ts: str, action: str, code: str
) -> Applied:
    oid = event.originator_id.hex
    target = views._secret_address(cur, oid)
    current = cur.execute(
        "SELECT current_version, fingerprint FROM secrets_view WHERE originator_id = ?",
        (oid,),
    ).fetchone()

    def born(version: int) -> str | None:
        found = cur.execute(
            "SELECT rotated_at FROM version_rotations WHERE originator_id = ? AND version = ?",
            (oid, version),
        ).fetchone()
        return None if found is None else str(found[0])

    # The rule of the summary fold (a rollback keeps the restored value's age).
    rotated_at = secret_summary.value_born(
        event,
        current[0] if current is not None else 0,
        current[1] if current is not None else None,
        born,
        ts,
    )
    cur.execute(
        "INSERT OR REPLACE INTO version_rotations VALUES (?, ?, ?)",
        (oid, event.version, rotated_at),
    )
    cur.execute(
        "UPDATE secrets_view SET current_version = ?, fingerprint = ?, "
        "last_change = ?, operator = ?, reason = ?, last_rotation = ?, deleted = 0, "
        "destroyed = 0, retained = retained + 1 WHERE originator_id = ?",
        (event.version, event.fingerprint, ts, event.operator, event.reason, rotated_at, oid),
    )
    code, action = REASON_CODES.get(event.reason, ("HBSE-002", event.reason))
    detail = f"v{event.version} [{event.fingerprint[:12]}]"
    if event.rolled_back_from is not None:
        detail += f" from v{event.rolled_back_from}"
    return target, "success", detail, action, code


def _secret_change(sql: str) -> Handler:
    """A handler that runs `sql` (parameters: ts, operator, originator id) on the secret's row."""

    def handler(
        views: ViewsFold, cur: sqlite3.Cursor, event: Any, ts: str, action: str, code: str
    ) -> Applied:
        oid = event.originator_id.hex
        target = views._secret_address(cur, oid)
        cur.execute(sql, (ts, event.operator, oid))
        return target, "success", "", action, code

    return handler


def _secret_destroyed(
    views: ViewsFold, cur: sqlite3.Cursor, event: Any, ts: str, action: str, code: str
) -> Applied:
    target, outcome, _, action, code = _SECRET_DESTROYED(views, cur, event, ts, action, code)
    return target, outcome, "values of " + ", ".join(f"v{n}" for n in event.versions), action, code


def _version_pruned(
    views: ViewsFold, cur: sqlite3.Cursor, event: Any, ts: str, action: str, code: str
) -> Applied:
    oid = event.originator_id.hex
    target = views._secret_address(cur, oid)
    cur.execute(
        "UPDATE secrets_view SET retained = retained - 1 WHERE originator_id = ?",
        (oid,),
    )
    return target, "success", f"v{event.version}", action, code


def _operator_registered(
    views: ViewsFold, cur: sqlite3.Cursor, event: Any, ts: str, action: str, code: str
) -> Applied:
    oid = event.originator_id.hex
    cur.execute(
        "INSERT OR REPLACE INTO operators_view VALUES (?, ?, ?, ?)",
        (oid, event.name, event.role, ts),
    )
    views._operator_names[oid] = event.name
    return _NO_TARGET, "success", f"{event.name} as {event.role}", action, code


def _role_granted(
    views: ViewsFold, cur: sqlite3.Cursor, event: Any, ts: str, action: str, code: str
) -> Applied:
    oid = event.originator_id.hex
    name = views._operator_name(cur, oid)
    cur.execute(
        "UPDATE operators_view SET role = ?, updated_at = ? WHERE originator_id = ?",
        (event.role, ts, oid),
    )
    return _NO_TARGET, "success", f"{name} as {event.role}", action, code


def _revoked(
    views: ViewsFold, cur: sqlite3.Cursor, event: Any, ts: str, action: str, code: str
) -> Applied:
    oid = event.originator_id.hex
    name = views._operator_name(cur, oid)
    cur.execute(
        "UPDATE operators_view SET role = NULL, updated_at = ? WHERE originator_id = ?",
        (ts, oid),
    )
    return _NO_TARGET, "success", name, action, code


def _session_closed(
    views: ViewsFold, cur: sqlite3.Cursor, event: Any, ts: str, action: str, code: str
) -> Applied:
    name = views._operator_name(cur, event.originator_id.hex)
    return _NO_TARGET, "success", f"{name} ({event.reason})", action, code


def _operator_named(
    views: ViewsFold, cur: sqlite3.Cursor, event: Any, ts: str, action: str, code: str
) -> Applied:
    return _NO_TARGET, "success", views._operator_name(cur, event.originator_id.hex), action, code


def _access_denied(
    views: ViewsFold, cur: sqlite3.Cursor, event: Any, ts: str, action: str, code: str
) -> Applied:
    target = event.environment, event.service, event.name
    return target, "denied", event.reason, event.action, code


def _validation_failed(
    views: ViewsFold, cur: sqlite3.Cursor, event: Any, ts: str, action: str, code: str
) -> Applied:
    target = event.environment, event.service, event.name
    return target, "rejected", event.rule, action, code


def _grant_refused(
    views: ViewsFold, cur: sqlite3.Cursor, event: Any, ts: str, action: str, code: str
) -> Applied:
    # Recorded escaped (ledger.records.escaped): shown as recorded, not escaped twice.
    detail = f"{event.rule}: operator '{event.name}' role '{event.role}'"
    return _NO_TARGET, "rejected", detail, action, code


def _integrity_check_failed(
    views: ViewsFold, cur: sqlite3.Cursor, event: Any, ts: str, action: str, code: str
) -> Applied:
    return _NO_TARGET, "failed", f"{event.fault} at position {event.position}", action, code


def _checkpoint_signed(
    views: ViewsFold, cur: sqlite3.Cursor, event: Any, ts: str, action: str, code: str
) -> Applied:
    detail = f"#{event.sequence} signs position {event.position}"
    return _NO_TARGET, "success", detail, action, code


def _senior_engineers_changed(
    views: ViewsFold, cur: sqlite3.Cursor, event: Any, ts: str, action: str, code: str
) -> Applied:
    detail = "still senior-engineer: " + ", ".join(event.senior_engineers)
    return _NO_TARGET, "success", detail, action, code


def _emergency_started(
    views: ViewsFold, cur: sqlite3.Cursor, event: Any, ts: str, action: str, code: str
) -> Applied:
    return _NO_TARGET, "success", event.reason, action, code


def _emergency_completed(
    views: ViewsFold, cur: sqlite3.Cursor, event: Any, ts: str, action: str, code: str
) -> Applied:
    counts = (
        ("rotated", event.rotated),
        ("needs_value", event.needs_value),
        ("failed", event.failed),
    )
    detail = json.dumps({k: len(v) for k, v in counts}, sort_keys=True)
    return _NO_TARGET, "success", detail, action, code


_SECRET_DESTROYED = _secret_change(
    "UPDATE secrets_view SET deleted = 1, destroyed = 1, retained = 0, "
    "last_change = ?, operator = ? WHERE originator_id = ?"
)
# Event class -> its handler; every stored event class is listed (tests/unit/test_views.py),
# the ones that change no view and show no detail with `_audit_only`.
_HANDLERS: dict[type[Any], Handler] = {
    Secret.Registered: _secret_registered,  # type: ignore[attr-defined]
    Secret.VersionAdded: _version_added,
    Secret.Deleted: _secret_change(  # type: ignore[attr-defined]
        "UPDATE secrets_view SET deleted = 1, last_change = ?, operator = ? WHERE originator_id = ?"
    ),
    Secret.Restored: _secret_change(  # type: ignore[attr-defined]
        "UPDATE secrets_view SET deleted = 0, last_change = ?, operator = ? WHERE originator_id = ?"
    ),
    Secret.Destroyed: _secret_destroyed,  # type: ignore[attr-defined]
    Secret.VersionPruned: _version_pruned,  # type: ignore[attr-defined]
    Operator.Registered: _operator_registered,  # type: ignore[attr-defined]
    Operator.RoleGranted: _role_granted,  # type: ignore[attr-defined]
    Operator.Revoked: _revoked,  # type: ignore[attr-defined]
    Operator.SessionClosed: _session_closed,  # type: ignore[attr-defined]
    Operator.SessionOpened: _operator_named,
    Operator.TokenIssued: _operator_named,  # type: ignore[attr-defined]
    ReadReceipt.SecretRead: _audit_only,  # type: ignore[attr-defined]  # (`_apply`'s fast path)
    Denial.AccessDenied: _access_denied,  # type: ignore[attr-defined]
    Rejection.ValidationFailed: _validation_failed,  # type: ignore[attr-defined]
    GrantRejection.GrantRefused: _grant_refused,  # type: ignore[attr-defined]
    IntegrityAlarm.IntegrityCheckFailed: _integrity_check_failed,  # type: ignore[attr-defined]
    LedgerSettings.SeniorEngineersChanged: _senior_engineers_changed,  # type: ignore[attr-defined]
    LedgerSettings.Initialized: _audit_only,  # type: ignore[attr-defined]
    LedgerSettings.RetentionChanged: _audit_only,  # type: ignore[attr-defined]
    LedgerSettings.FingerprintKeyExported: _audit_only,  # type: ignore[attr-defined]
    LedgerSettings.FingerprintKeyImported: _audit_only,  # type: ignore[attr-defined]
    LedgerSettings.VaultChosen: _audit_only,  # type: ignore[attr-defined]
    Incident.EmergencyRotationStarted: _emergency_started,  # type: ignore[attr-defined]
    Incident.EmergencyRotationCompleted: _emergency_completed,  # type: ignore[attr-defined]
    RotationRun.Started: _audit_only,  # type: ignore[attr-defined]
    RotationRun.BatchEnded: _audit_only,  # type: ignore[attr-defined]
    RotationRun.Abandoned: _audit_only,  # type: ignore[attr-defined]
    ScheduleChange.ScheduleChanged: _audit_only,  # type: ignore[attr-defined]
}


def handlers() -> dict[type[Any], Handler]:
    """Every event class's handler. The checkpoint's is added on first need: ledger.checkpoint
    brings the signing (cryptography), which the reads that fold views never import
    (tests/e2e/test_cli_surface.py); a checkpoint event to fold means it is imported already."""
    from ledger.checkpoint import Checkpoint

    _HANDLERS.setdefault(Checkpoint.CheckpointSigned, _checkpoint_signed)  # type: ignore[attr-defined]
    return _HANDLERS
