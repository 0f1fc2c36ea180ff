"""Check stored snapshots against the events they summarise.

Snapshots are a cache outside the hash chain: whoever can write the database could edit one
(an `Operator`'s role, say) and every later load would start from the edit while the chain
still verifies. Folding the aggregate's own events up to the snapshot's version and comparing
the result with the stored state detects that. Costs one replay per snapshot.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

if TYPE_CHECKING:
    from ledger.application import SecretsLedger


@dataclass(frozen=True)
class SnapshotFault:
    originator_id: str
    version: int
    detail: str


@dataclass(frozen=True)
class SnapshotReport:
    checked: int
    faults: list[SnapshotFault]

    @property
    def ok(self) -> bool:
        return not self.faults


def _stored_snapshots(app: SecretsLedger) -> Iterator[StoredEvent]:
    """Every stored snapshot, by aggregate then version (SQLite or PostgreSQL)."""
    if app.snapshots is None:
        return
    yield from app._chained_recorder().iter_snapshots()


def _state_bytes(app: SecretsLedger, aggregate: Any) -> bytes:
    snapshot_class: Any = type(aggregate).Snapshot
    return bytes(app.mapper.transcoder.encode(snapshot_class.take(aggregate).state))


def verify_snapshots(app: SecretsLedger) -> SnapshotReport:
    """Fold each aggregate's events once, comparing the state at every snapshot's version.

    One pass per aggregate (not one replay per snapshot): a secret with thousands of events
    and a snapshot every 50 costs one fold, not a quadratic number of event decodes.
    """
    by_aggregate: dict[str, list[StoredEvent]] = {}
    for stored in _stored_snapshots(app):
        by_aggregate.setdefault(str(stored.originator_id), []).append(stored)
    checked = 0
    faults: list[SnapshotFault] = []
    for oid, snapshots in by_aggregate.items():
        checked += len(snapshots)
        faults.extend(_check_aggregate(app, oid, snapshots))
    return SnapshotReport(checked, faults)


def _check_aggregate(
    app: SecretsLedger, oid: str, snapshots: list[StoredEvent]
) -> Iterator[SnapshotFault]:
    events = iter(app.events.get(UUID(oid), lte=snapshots[-1].originator_version))
    folded: Any = None
    for stored in snapshots:
        version = stored.originator_version
        try:
            snapshot: Any = app.mapper.to_domain_event(stored)
            from_snapshot = snapshot.mutate(None)
        except Exception as exc:
            yield SnapshotFault(oid, version, f"undecodable ({type(exc).__name__})")
            continue
        while folded is None or folded.version < version:
            event = next(events, None)
            if event is None:
                break
            folded = event.mutate(folded)  # type: ignore[attr-defined]
        if folded is None or folded.version != version:
            yield SnapshotFault(oid, version, "no events up to this version")
        elif type(folded) is not type(from_snapshot):
            yield SnapshotFault(oid, version, "names another aggregate type")
        elif _state_bytes(app, folded) != _state_bytes(app, from_snapshot):
            yield SnapshotFault(oid, version, "state differs from its events")
