"""The hash chain that makes the event log tamper-evident.

Each stored event gets a link: SHA-256 over the previous link, the event's notification id and
its stored bytes. Links are written in the same transaction as the events (see
ledger/store_sqlite.py), so there is never an event without its link or a link without its
event, and they follow log order whatever gaps the notification ids have.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from uuid import UUID

from eventsourcing.persistence import StoredEvent

GENESIS = b"\x00" * 32


def _frame(part: bytes) -> bytes:
    # Length-prefix every field so that no two different events can produce the same bytes.
    return len(part).to_bytes(8, "big") + part


def link(
    previous: bytes,
    notification_id: int,
    originator_id: UUID | str,
    originator_version: int,
    topic: str,
    state: bytes,
) -> bytes:
    oid = originator_id.hex if isinstance(originator_id, UUID) else str(originator_id)
    digest = hashlib.sha256()
    digest.update(previous)
    digest.update(notification_id.to_bytes(8, "big"))
    digest.update(_frame(oid.encode()))
    digest.update(originator_version.to_bytes(8, "big", signed=True))
    digest.update(_frame(topic.encode()))
    digest.update(_frame(bytes(state)))
    return digest.digest()


@dataclass(frozen=True)
class StoredRow:
    """An event as stored (for verification)."""

    notification_id: int
    originator_id: UUID | str
    originator_version: int
    topic: str
    state: bytes


@dataclass(frozen=True)
class ChainFault:
    position: int
    kind: str  # edited | deleted | inserted | reordered | truncated | signature | snapshot
    detail: str


@dataclass(frozen=True)
class ChainReport:
    events_checked: int
    events_valid: int
    head: bytes
    fault: ChainFault | None

    @property
    def ok(self) -> bool:
        return self.fault is None


def locate(row: StoredRow, links: Iterable[tuple[int, bytes]]) -> int | None:
    """The position whose stored link this row's bytes produce, if any.

    A row that fails at its own position but fits another one was moved there (rows swapped or
    shuffled), which an auditor reads very differently from changed bytes.
    """
    previous = GENESIS
    for position, stored in links:
        candidate = link(
            previous, position, row.originator_id, row.originator_version, row.topic, row.state
        )
        if hmac.compare_digest(candidate, stored):
            return position
        previous = stored
    return None


def verify(
    rows: Iterable[StoredRow],
    links: Iterable[tuple[int, bytes]],
    *,
    rescan: Callable[[], Iterable[tuple[int, bytes]]] | None = None,
    on_verified: Callable[[StoredRow, bytes], ChainFault | None] | None = None,
    keep_verified: bool = True,
    after: tuple[int, bytes] = (0, GENESIS),
    consecutive_ids: bool = False,
) -> tuple[ChainReport, list[tuple[int, bytes]]]:
    """Walk events and links together in log order; stop at the first fault.

    Returns the report and (unless `keep_verified` is false, for long logs) the (position,
    link) pairs verified. Both iterables must be in ascending notification id order.
    `rescan` re-reads every stored link, to tell a moved row from an edited one.
    `on_verified` sees each row whose link checked out and may report a fault of its own.
    `after` is the (position, link) to continue from when checking only the newest part.
    `consecutive_ids`: the store never skips ids (SQLite), so a hole means deleted rows.
    """
    row_iter: Iterator[StoredRow] = iter(rows)
    link_iter: Iterator[tuple[int, bytes]] = iter(links)
    previous_id, previous = after
    checked = 0
    verified: list[tuple[int, bytes]] = []
    row = next(row_iter, None)
    chained = next(link_iter, None)
    while row is not None or chained is not None:
        if row is not None and (chained is None or row.notification_id < chained[0]):
            fault = ChainFault(row.notification_id, "inserted", "event has no chain link")
            return ChainReport(checked + 1, checked, previous, fault), verified
        if chained is not None and row is None:
            fault = ChainFault(chained[0], "truncated", "the chain goes on past the last event")
            return ChainReport(checked + 1, checked, previous, fault), verified
        if chained is not None and (row is None or chained[0] < row.notification_id):
            fault = ChainFault(chained[0], "deleted", "chain link has no event")
            return ChainReport(checked + 1, checked, previous, fault), verified
        assert row is not None and chained is not None
        checked += 1
        expected = link(
            previous,
            row.notification_id,
            row.originator_id,
            row.originator_version,
            row.topic,
            row.state,
        )
        if not hmac.compare_digest(expected, chained[1]):
            fault = _classify(row, previous_id if consecutive_ids else None, rescan)
            return ChainReport(checked, checked - 1, previous, fault), verified
        if on_verified is not None:
            found = on_verified(row, expected)
            if found is not None:
                return ChainReport(checked, checked - 1, previous, found), verified
        previous = expected
        previous_id = row.notification_id
        if keep_verified:
            verified.append((row.notification_id, expected))
        row = next(row_iter, None)
        chained = next(link_iter, None)
    return ChainReport(checked, checked, previous, None), verified


def _classify(
    row: StoredRow,
    previous_id: int | None,
    rescan: Callable[[], Iterable[tuple[int, bytes]]] | None,
) -> ChainFault:
    position = row.notification_id
    if rescan is not None:
        home = locate(row, rescan())
        if home is not None and home != position:
            return ChainFault(
                position, "reordered", f"event stored at {position} belongs at {home}"
            )
    if previous_id is not None and position - previous_id > 1:
        # The store hands out consecutive ids, so a hole right before a link that no longer
        # follows its predecessor means events went missing together with their links.
        missing = previous_id + 1
        return ChainFault(
            missing,
            "deleted",
            f"events {missing}..{position - 1} and their links are missing",
        )
    return ChainFault(position, "edited", "event bytes do not match the chain")


class ChainedRecorder(Protocol):
    """What verification needs from a chained event store (SQLite: ledger/store_sqlite.py,
    PostgreSQL: ledger/store_postgres.py). Both yield in ascending notification id order,
    strictly after `start`."""

    def iter_rows(self, start: int = 0) -> Iterator[StoredRow]: ...

    def iter_links(self, start: int = 0) -> Iterator[tuple[int, bytes]]: ...


def verify_store(recorder: ChainedRecorder) -> ChainReport:
    """Verify a whole store's chain (without keeping the verified links)."""
    report, _ = verify(recorder.iter_rows(), recorder.iter_links())
    return report


@runtime_checkable
class CheckpointedRecorder(ChainedRecorder, Protocol):
    """What signed checkpoints and `audit verify` need besides the walk (both stores)."""

    def chain_head(self) -> tuple[int, bytes]: ...

    def link_at(self, position: int) -> bytes | None: ...

    def row_at(self, position: int) -> StoredRow | None: ...

    def position_of(self, originator_id: UUID, version: int) -> int | None: ...

    def iter_snapshots(self) -> Iterator[StoredEvent]: ...

    def delete_snapshot(self, originator_id: UUID, version: int) -> None: ...

    def last_with_topic(self, topic: str) -> StoredRow | None: ...
