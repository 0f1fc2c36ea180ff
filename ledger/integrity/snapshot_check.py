"""Check stored snapshots against their seals and the events they summarise.

Snapshots are a cache outside the hash chain: whoever can write the database could edit one
(an `Operator`'s role, say). Loads use only snapshots whose seal verifies
(ledger/codec/decoding.py);
this check also folds the aggregate's own events up to each snapshot's version and compares
the result with the stored state, so an auditor without the ledger's key (an evidence bundle)
still finds an edit. Costs one fold per snapshotted aggregate.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from ledger.codec.decoding import MAGIC, is_legacy_sealed, is_sealed, unseal

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
    # Snapshots that match their events but carry no seal (written before snapshots were
    # sealed): never used by a load, harmless, removed by `doctor --repair`.
    unsealed: list[SnapshotFault] = field(default_factory=list)
    # False where no key was at hand (a bundle, a host without the fingerprint key): seals
    # were not checked, only contents.
    seals_checked: bool = True

    @property
    def ok(self) -> bool:
        return not self.faults


def _stored_snapshots(app: SecretsLedger) -> Iterator[StoredEvent]:
    """Every stored snapshot, by aggregate then version (SQLite or PostgreSQL)."""
    if app.snapshots is None:
        return
    yield from app.uow.chained_recorder().iter_snapshots()


def _state_bytes(app: SecretsLedger, aggregate: Any) -> bytes:
    snapshot_class: Any = type(aggregate).Snapshot
    return bytes(app.mapper.transcoder.encode(snapshot_class.take(aggregate).state))


def verify_snapshots(app: SecretsLedger, *, chain_checked: bool = False) -> SnapshotReport:
    """Fold each aggregate's events once, comparing the state at every snapshot's version.

    One pass per aggregate (not one replay per snapshot): a secret with thousands of events
    and a snapshot every 50 costs one fold, not a quadratic number of event decodes.
    With `chain_checked` (`doctor`, which removes what differs), each event folded is first
    checked against its chain link: damage is exit 6 naming its position, an alarm recorded.
    """
    by_aggregate: dict[str, list[StoredEvent]] = {}
    for stored in _stored_snapshots(app):
        by_aggregate.setdefault(str(stored.originator_id), []).append(stored)
    checked = 0
    faults: list[SnapshotFault] = []
    unsealed: list[SnapshotFault] = []
    key = app.snapshot_seal_key(open_vault=True) if by_aggregate else None
    for oid, snapshots in by_aggregate.items():
        checked += len(snapshots)
        for fault in _check_aggregate(app, oid, snapshots, key, chain_checked):
            (unsealed if fault.detail in _UNUSED else faults).append(fault)
    return SnapshotReport(checked, faults, unsealed, key is not None or not by_aggregate)


_UNSEALED = "not sealed (written by an earlier version): unused"
_LEGACY = "sealed by an earlier version, bound to neither the ledger nor its history: unused"
_UNUSED = (_UNSEALED, _LEGACY)


def _opened(
    app: SecretsLedger, stored: StoredEvent, key: bytes | None
) -> tuple[StoredEvent | None, str]:
    """(the snapshot as the mapper wrote it, or None; the seal's fault, "" when none)."""
    if is_legacy_sealed(stored):
        body = bytes(stored.state)[len(MAGIC) + 32 :]
        return (
            StoredEvent(stored.originator_id, stored.originator_version, stored.topic, body),
            _LEGACY,
        )
    if not is_sealed(stored):
        return stored, _UNSEALED
    if key is None:  # nothing to check the seal with: take the contents as they are
        body = bytes(stored.state)[len(MAGIC) + 32 :]
        return (
            StoredEvent(stored.originator_id, stored.originator_version, stored.topic, body),
            "",
        )
    link = app.event_link(UUID(str(stored.originator_id)), stored.originator_version)
    opened = unseal(key, stored, link)
    return opened, "" if opened is not None else "its seal does not verify (edited or forged)"


def _check_aggregate(
    app: SecretsLedger,
    oid: str,
    snapshots: list[StoredEvent],
    key: bytes | None,
    chain_checked: bool = False,
) -> Iterator[SnapshotFault]:
    versions = [s.originator_version for s in snapshots]
    try:
        aggregate_id = UUID(oid)
    except ValueError:
        aggregate_id = None
    if aggregate_id is None or not all(type(v) is int for v in versions):
        for version in versions:
            yield SnapshotFault(oid, version, "names no aggregate version (forged)")
        return
    events: Iterator[Any]
    if chain_checked:
        events = iter(_checked_events(app, aggregate_id, max(versions)))
    else:
        events = iter(app.events.get(aggregate_id, lte=max(versions)))
    folded: Any = None
    for stored in snapshots:
        version = stored.originator_version
        opened, seal_fault = _opened(app, stored, key)
        if opened is None:
            yield SnapshotFault(oid, version, seal_fault)
            continue
        try:
            snapshot: Any = app.mapper.to_domain_event(opened)
            from_snapshot = snapshot.mutate(None)
        except Exception as exc:
            yield SnapshotFault(oid, version, f"undecodable ({type(exc).__name__})")
            continue
        while folded is None or folded.version < version:
            event = next(events, None)
            if event is None:
                break
            folded = event.mutate(folded)
        if folded is None or folded.version != version:
            yield SnapshotFault(oid, version, "no events up to this version")
        elif type(folded) is not type(from_snapshot):
            yield SnapshotFault(oid, version, "names another aggregate type")
        elif _state_bytes(app, folded) != _state_bytes(app, from_snapshot):
            yield SnapshotFault(oid, version, "state differs from its events")
        elif seal_fault:
            yield SnapshotFault(oid, version, seal_fault)


def _checked_events(app: SecretsLedger, aggregate_id: UUID, upto: int) -> list[Any]:
    """The aggregate's events up to version `upto`, each checked against its chain link and
    decoded (ledger/access/authority.py), read whole before the fold starts."""
    from ledger.access.authority import CheckedEventStore, LinkedRecorder

    recorder = app.recorder
    if not isinstance(recorder, LinkedRecorder):
        return list(app.events.get(aggregate_id, lte=upto))
    with app.uow.failing_closed("doctor's check of snapshots"):
        return list(CheckedEventStore(app.mapper, recorder).get(aggregate_id, lte=upto))
