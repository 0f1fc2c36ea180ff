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
    datastore: Any = getattr(app.recorder, "datastore", None)
    if datastore is None or app.snapshots is None:
        return
    with datastore.transaction(commit=False) as c:
        c.execute(
            "SELECT originator_id, originator_version, topic, state FROM stored_snapshots "
            "ORDER BY originator_id, originator_version"
        )
        rows = c.fetchall()
    for r in rows:
        state = r[3] if isinstance(r[3], bytes | bytearray | memoryview) else str(r[3]).encode()
        yield StoredEvent(str(r[0]), int(r[1]), str(r[2]), bytes(state))


def _state_bytes(app: SecretsLedger, aggregate: Any) -> bytes:
    snapshot_class: Any = type(aggregate).Snapshot
    return bytes(app.mapper.transcoder.encode(snapshot_class.take(aggregate).state))


def verify_snapshots(app: SecretsLedger) -> SnapshotReport:
    checked = 0
    faults: list[SnapshotFault] = []
    for stored in _stored_snapshots(app):
        checked += 1
        oid, version = str(stored.originator_id), stored.originator_version
        try:
            snapshot: Any = app.mapper.to_domain_event(stored)
            from_snapshot = snapshot.mutate(None)
        except Exception as exc:
            faults.append(SnapshotFault(oid, version, f"undecodable ({type(exc).__name__})"))
            continue
        folded: Any = None
        for event in app.events.get(UUID(oid), lte=version):
            folded = event.mutate(folded)  # type: ignore[attr-defined]
        if folded is None or folded.version != version:
            faults.append(SnapshotFault(oid, version, "no events up to this version"))
        elif type(folded) is not type(from_snapshot):
            faults.append(SnapshotFault(oid, version, "names another aggregate type"))
        elif _state_bytes(app, folded) != _state_bytes(app, from_snapshot):
            faults.append(SnapshotFault(oid, version, "state differs from its events"))
    return SnapshotReport(checked, faults)
