"""Secrets nobody read in a window (`secrets report unused`): candidates for deletion, as the
ledger stood at any instant.

Folded from the log like the compliance report (projections/compliance.py): each secret's
events up to the instant with the summary fold (projections/secret_summary.py), so a secret
deleted or destroyed by then is not listed and one deleted since is; and every value read
(`ReadReceipt.SecretRead`) stamped at or before the instant, keeping each address's newest.
A secret is unused when it is live at the instant and its newest read is older than the
window's start, or it has none. Reads are most of a log: this decodes every one of them
(docs/audit.md gives the time on a generated ledger).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ledger.records import ReadReceipt
from projections import secret_summary
from projections.timefmt import iso

if TYPE_CHECKING:
    from ledger.application import SecretsLedger

PAGE = 2000
_READ: type[Any] = ReadReceipt.SecretRead  # type: ignore[attr-defined]


def _topics() -> list[str]:
    classes = (*secret_summary.EVENTS, _READ)
    return [f"{cls.__module__}:{cls.__qualname__}" for cls in classes]


@dataclass(frozen=True)
class UnusedSecret:
    environment: str
    service: str
    name: str
    registered: datetime
    last_read: datetime | None
    last_reader: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "service": self.service,
            "name": self.name,
            "registered": iso(self.registered),
            "last_read": iso(self.last_read) if self.last_read else None,
            "last_reader": self.last_reader,
        }


@dataclass(frozen=True)
class UnusedReport:
    as_of: datetime
    since: datetime  # the window's start: a read after it counts as use
    live: int  # secrets live at `as_of`
    secrets: list[UnusedSecret]

    def as_json(self) -> dict[str, Any]:
        return {
            "as_of": iso(self.as_of),
            "since": iso(self.since),
            "live_secrets": self.live,
            "unused": [s.as_json() for s in self.secrets],
        }


def unused(
    ledger: SecretsLedger, as_of: datetime, since: datetime, environment: str | None = None
) -> UnusedReport:
    """The secrets live at `as_of` that no one read after `since` (up to `as_of`)."""
    summaries: dict[str, secret_summary.Summary] = {}
    registered: dict[str, datetime] = {}
    stopped: set[str] = set()  # secrets with an event after `as_of`: keep their prefix
    reads: dict[tuple[str, str, str], tuple[datetime, str]] = {}
    start: int | None = None
    while True:
        page = ledger.recorder.select_notifications(
            start=start, limit=PAGE, topics=_topics(), inclusive_of_start=False
        )
        if not page:
            break
        start = page[-1].id
        for notification in page:
            event: Any = ledger.mapper.to_domain_event(notification)
            if event.timestamp > as_of:
                if type(event) is not _READ:
                    stopped.add(event.originator_id.hex)
                continue
            if type(event) is _READ:
                address = (event.environment, event.service, event.name)
                newest = reads.get(address)
                if newest is None or event.timestamp >= newest[0]:
                    reads[address] = (event.timestamp, event.operator)
                continue
            oid = event.originator_id.hex
            if oid in stopped:
                continue
            if secret_summary.fold(summaries, oid, event, event.timestamp):
                registered.setdefault(oid, event.timestamp)
    live = [
        (oid, s)
        for oid, s in summaries.items()
        if s["current_version"]
        and not s["deleted"]
        and (environment is None or s["environment"] == environment)
    ]
    found: list[UnusedSecret] = []
    for oid, s in live:
        read = reads.get((s["environment"], s["service"], s["name"]))
        if read is not None and read[0] > since:
            continue
        found.append(
            UnusedSecret(
                s["environment"],
                s["service"],
                s["name"],
                registered[oid],
                read[0] if read else None,
                read[1] if read else None,
            )
        )
    found.sort(key=lambda u: (u.environment, u.service, u.name))
    return UnusedReport(as_of=as_of, since=since, live=len(live), secrets=found)
