"""Rotation compliance at any instant, folded from the ledger's history.

Why a fold of the log and not `secrets_view`: the view keeps only each secret's newest version,
but the age of the value in use depends on older ones (a rollback brings back an older value),
and a past `--as-of` must see the ledger as it was then. So this projection reads only the
`Secret`, `RotationRun`, `ScheduleChange` and emergency-start (`Incident`) events (filtered by
topic in the store, so reads, denials and sessions are never decoded), folds each secret's
events up to the instant asked for with the summary fold that replay shares
(projections/secret_summary.py), each rotation run's with the domain's own event classes, and
applies the rotation policy (`ledger.rotation.policy.spec_status`) with the catalogue's
rotation and warning days, and the newest emergency rotation up to that instant (status
`emergency-pending`). One code path serves now, the past and the future (a future instant sees
today's history).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from ledger.address import SecretAddress
from ledger.errors import ValidationFailed
from ledger.integrity.checked_events import checked_event
from ledger.records import Incident
from ledger.rotation.catalogue import Catalogue
from ledger.rotation.runs import (
    DUE_SOON,
    EMERGENCY_PENDING,
    EXEMPT,
    NON_COMPLIANT,
    OVERDUE,
    STATUSES,
    Assessment,
    RunSummary,
    ScheduleState,
    assess_value,
)
from ledger.rotation_records import RotationRun, ScheduleChange
from ledger.store.notifications import pages
from projections import secret_summary
from projections.timefmt import iso

if TYPE_CHECKING:
    from ledger.application import SecretsLedger

_RUN_EVENTS: tuple[type[Any], ...] = (
    RotationRun.Started,  # type: ignore[attr-defined]
    RotationRun.BatchEnded,  # type: ignore[attr-defined]
    RotationRun.Abandoned,  # type: ignore[attr-defined]
)
_SCHEDULE_CHANGED: type[Any] = ScheduleChange.ScheduleChanged  # type: ignore[attr-defined]
_EMERGENCY_STARTED: type[Any] = Incident.EmergencyRotationStarted  # type: ignore[attr-defined]
PAGE = 2000


def _topics() -> list[str]:
    """The stored topics of the events this projection reads (filtered in the store)."""
    classes = (*secret_summary.EVENTS, *_RUN_EVENTS, _SCHEDULE_CHANGED, _EMERGENCY_STARTED)
    return [f"{cls.__module__}:{cls.__qualname__}" for cls in classes]


_TIME_PART = re.compile(r"[T ](\d{2})(:\d{2})?(:\d{2})?(?:[.,](\d{1,6}))?", re.ASCII)


def parse_as_of(text: str) -> datetime:
    """An ISO 8601 date or date-time (naive means UTC), taken as the *end* of the period it
    names: a date means the end of that day, ``12:00`` the end of that minute, and a time
    shown to the millisecond (as every timestamp this tool prints) the end of that
    millisecond, so pasting a printed timestamp includes the event it came from."""
    cleaned = text.strip()
    shown = cleaned if len(cleaned) <= 40 else cleaned[:37] + "..."
    problem = ValidationFailed(
        "as-of",
        f"--as-of {shown!r} is not an ISO 8601 date or date-time "
        "(e.g. 2026-03-01, 2026-03-01T12:00, 2026-03-01T12:00:00Z)",
    )
    if not cleaned:
        raise problem
    try:
        end = _end_of(cleaned)
        end.astimezone(UTC)  # an instant near year 1 or 9999 may not exist in UTC
    except (ValueError, OverflowError):
        raise problem from None
    return end


def _end_of(cleaned: str) -> datetime:
    if len(cleaned) <= 10 and "T" not in cleaned:
        day = datetime.fromisoformat(cleaned).date()
        return datetime.combine(day, time.max, tzinfo=UTC)
    value = datetime.fromisoformat(cleaned.replace("z", "Z").replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    found = _TIME_PART.search(cleaned, 8)
    if found is None:
        return value
    _, minutes, seconds, fraction = found.groups()
    if fraction is not None:
        period = timedelta(microseconds=10 ** (6 - len(fraction)))
    elif seconds is not None:
        period = timedelta(seconds=1)
    elif minutes is not None:
        period = timedelta(minutes=1)
    else:
        period = timedelta(hours=1)
    return value + (period - timedelta(microseconds=1))  # (so 9999-12-31T23:59 still fits)


@dataclass(frozen=True)
class ComplianceReport:
    as_of: datetime
    secrets: list[Assessment]
    schedule: ScheduleState
    emergency_since: datetime | None = None  # the newest emergency rotation at or before as_of

    def count(self, status: str) -> int:
        return sum(1 for a in self.secrets if a.status == status)

    @property
    def last_rotation(self) -> datetime | None:
        return max((a.last_rotation for a in self.secrets if a.last_rotation), default=None)

    @property
    def next_due(self) -> datetime | None:
        return min((a.due for a in self.secrets if a.due is not None), default=None)

    @property
    def compliant(self) -> bool:
        return not any(self.count(status) for status in NON_COMPLIANT)

    @property
    def status_line(self) -> str:
        parts = []
        if self.count(EMERGENCY_PENDING):
            parts.append(f"{self.count(EMERGENCY_PENDING)} awaiting emergency rotation")
        if self.count(OVERDUE):
            parts.append(f"{self.count(OVERDUE)} overdue")
        if self.count(DUE_SOON):
            parts.append(f"{self.count(DUE_SOON)} due soon")
        if parts:
            return ", ".join(parts)
        # No secret to rotate, or none with a value yet: there is no rotation to speak of.
        if not any(a.last_rotation for a in self.secrets if a.status != EXEMPT):
            return "never rotated"
        return "Compliant"

    def header(self) -> list[str]:
        last = self.last_rotation
        due = self.next_due
        return [
            "Secrets Rotation Status",
            f"Last Rotation: {iso(last) if last else 'Never'}",
            f"Next Rotation Due: {iso(due) if due else 'N/A'}",
            f"Compliance Status: {self.status_line}",
            f"Rotation Schedule: {describe_schedule(self.schedule)}",
        ]

    def rows(self) -> list[list[str]]:
        return [
            [
                str(a.address),
                a.kind + ("" if a.catalogued else "*"),
                iso(a.last_rotation) if a.last_rotation else "never",
                _age(a, self.as_of),
                iso(a.due) if a.due else "-",
                a.status,
            ]
            for a in self.secrets
        ]

    def as_json(self) -> dict[str, Any]:
        last, due = self.last_rotation, self.next_due
        schedule = self.schedule
        return {
            "as_of": iso(self.as_of),
            "last_rotation": iso(last) if last else None,
            "next_rotation_due": iso(due) if due else None,
            "compliance_status": self.status_line,
            "compliant": self.compliant,
            "counts": {s: self.count(s) for s in STATUSES},
            "emergency_since": iso(self.emergency_since) if self.emergency_since else None,
            "schedule": {
                "installed": schedule.installed,
                "at": schedule.at,
                "host": schedule.host,
                "changed": iso(schedule.changed) if schedule.changed else None,
                "last_run": _run_json(schedule.last_run),
            },
            "secrets": [
                {
                    "address": str(a.address),
                    "environment": a.address.environment,
                    "service": a.address.service,
                    "name": a.address.name,
                    "kind": a.kind,
                    "catalogued": a.catalogued,
                    "version": a.version,
                    "created": iso(a.created) if a.created else None,
                    "last_rotation": iso(a.last_rotation) if a.last_rotation else None,
                    "initial_value": a.initial_value,
                    "age_days": _age_days(a, self.as_of),
                    "rotation_days": a.rotation_days,
                    "warning_days": a.warning_days,
                    "due": iso(a.due) if a.due else None,
                    "status": a.status,
                }
                for a in self.secrets
            ],
        }


def _age(a: Assessment, as_of: datetime) -> str:
    age = a.age(as_of)
    return "-" if age is None else f"{max(0, age.days)}d"


def _age_days(a: Assessment, as_of: datetime) -> float | None:
    age = a.age(as_of)
    return None if age is None else round(age.total_seconds() / 86400, 2)


def _run_json(run: RunSummary | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "run_id": run.run_id,
        "scope": run.scope,
        "started": iso(run.started),
        "ended": iso(run.ended) if run.ended else None,
        "complete": run.complete,
        "rotated": run.rotated,
        "needs_value": run.needs_value,
        "failed": run.failed,
    }


def describe_schedule(schedule: ScheduleState) -> str:
    if not schedule.installed:
        text = "not installed"
    else:
        text = f"daily at {schedule.at} on {schedule.host}"
    run = schedule.last_run
    if run is None:
        return text + ("; never ran" if schedule.installed else "")
    if run.ended is None:
        outcome = "did not finish"
    elif run.complete:
        outcome = f"complete, {run.rotated} rotated"
    else:
        outcome = f"{run.rotated} rotated, {run.needs_value} need a value, {run.failed} failed"
    return f"{text}; last run {iso(run.started)} ({outcome})"


def _assess(
    summary: secret_summary.Summary,
    catalogue: Catalogue,
    as_of: datetime,
    since: datetime | None,
) -> Assessment:
    """A live secret's assessment from its summary, folded with the events' datetimes."""
    born: dict[str, datetime] = summary["born"]
    first = min((int(n) for n in born), default=None)  # its first version
    return assess_value(
        SecretAddress(summary["environment"], summary["service"], summary["name"]),
        summary["current_version"],
        born[str(first)] if first is not None else None,
        summary["last_rotation"],
        catalogue.lookup(summary["service"], summary["name"]),
        as_of,
        since,
    )


def compliance(
    ledger: SecretsLedger,
    catalogue: Catalogue,
    as_of: datetime,
    environment: str | None = None,
    position: int | None = None,
) -> ComplianceReport:
    """Every live secret's rotation status as the ledger stood at `as_of`.

    With `position`, the log is cut there instead of by timestamp (the cut of `secrets audit
    replay`: every event up to that position, whatever its writer's clock said); `as_of` is
    still the instant ages and due dates are measured at."""
    summaries: dict[str, secret_summary.Summary] = {}  # secret id (hex) -> its summary
    runs_by_id: dict[UUID, Any] = {}
    stopped: set[UUID] = set()  # aggregates with an event after `as_of`: keep their prefix
    schedule_event: Any = None
    since: datetime | None = None  # the newest emergency rotation's start up to `as_of`
    decisive = {f"{c.__module__}:{c.__qualname__}" for c in (_SCHEDULE_CHANGED, _EMERGENCY_STARTED)}
    for page in pages(ledger.recorder, topics=_topics(), stop=position, page_size=PAGE):
        for notification in page:
            if notification.topic in decisive:
                # Few, and each one sets every secret's status (an emergency start) or the
                # schedule's: chain-checked (exit 6 on damage, ledger/integrity/checked_events.py).
                event: Any = checked_event(ledger, notification, "a rotation status")
            else:
                event = ledger.mapper.to_domain_event(notification)
            oid = event.originator_id
            if oid in stopped:
                continue
            if position is None and event.timestamp > as_of:
                stopped.add(oid)
                continue
            cls = type(event)
            if cls is _SCHEDULE_CHANGED:
                schedule_event = event
            elif cls is _EMERGENCY_STARTED:
                since = event.timestamp if since is None else max(since, event.timestamp)
            elif not secret_summary.fold(summaries, oid.hex, event, event.timestamp):
                runs_by_id[oid] = event.mutate(runs_by_id.get(oid))
    secrets = [
        _assess(s, catalogue, as_of, since)
        for s in summaries.values()
        if s["current_version"]
        and not s["deleted"]
        and (environment is None or s["environment"] == environment)
    ]
    runs = [r for r in runs_by_id.values() if isinstance(r, RotationRun)]
    secrets.sort(key=lambda a: a.address)
    scheduled = sorted((r for r in runs if r.trigger == "schedule"), key=lambda r: r.created_on)
    last_run = RunSummary.of(scheduled[-1]) if scheduled else None
    if schedule_event is None:
        schedule = ScheduleState(False, None, None, None, last_run)
    else:
        schedule = ScheduleState(
            schedule_event.action == "installed",
            schedule_event.at,
            schedule_event.host,
            schedule_event.timestamp,
            last_run,
        )
    return ComplianceReport(as_of=as_of, secrets=secrets, schedule=schedule, emergency_since=since)


__all__ = ["ComplianceReport", "compliance", "describe_schedule", "parse_as_of"]
