"""The hash chain that makes the event log tamper-evident.

Each stored event gets a link: SHA-256 over the previous link, the event's notification id and
its stored bytes. Links are written in the same transaction as the events (see
ledger/store/sqlite.py), so there is never an event without its link or a link without its
event, and they follow log order whatever gaps the notification ids have.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from struct import Struct
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from ledger.errors import IntegrityFailure

GENESIS = b"\x00" * 32

# One page of `verify_fast`'s input: (notification id, originator id, originator version, topic,
# state, the link stored at that id or None) per event, and the number of links stored in the
# page's id range.
JoinedRow = tuple[Any, Any, Any, Any, Any, Any]
JoinedPage = tuple[Sequence[JoinedRow], int]
# Whether a stored event whose link holds still cannot be used: (position, originator id,
# version, topic, state) -> the fault, or None (ledger/integrity/verify.py `verify_history`).
RowCheck = Callable[[int, Any, Any, Any, Any], "ChainFault | None"]


def _frame(part: bytes) -> bytes:
    # Length-prefix every field so that no two different events can produce the same bytes.
    return len(part).to_bytes(8, "big") + part


class MalformedRow(TypeError):
    """A stored row holding a value of a type (or range) no writer stores: a link cannot be
    computed for it, and the row is damage (reported as an edit at its position)."""


_INT64 = range(-(2**63), 2**63)


def _field(name: str, value: object) -> str:
    shown = type(value).__name__
    return f"its {name} is {'out of range' if isinstance(value, int) else 'a ' + shown}"


def check_types(
    notification_id: object,
    originator_id: object,
    originator_version: object,
    topic: object,
    state: object,
) -> str | None:
    """Why a stored row's values cannot be what a writer stored, or None. SQLite lets every
    column hold any type, so a file edit can leave text, a BLOB, NULL or a huge number
    anywhere."""
    if type(notification_id) is not int or not 0 <= notification_id < 2**64:
        return _field("position", notification_id)
    if not isinstance(originator_id, UUID | str):
        return _field("originator id", originator_id)
    if type(originator_version) is not int or originator_version not in _INT64:
        return _field("originator version", originator_version)
    if type(topic) is not str:
        return _field("topic", topic)
    if not isinstance(state, bytes | bytearray | memoryview):
        return _field("state", state)
    return None


def link(
    previous: bytes,
    notification_id: int,
    originator_id: UUID | str,
    originator_version: int,
    topic: str,
    state: bytes,
) -> bytes:
    """The link of one event; `MalformedRow` where a value is of a type no writer stores."""
    problem = check_types(notification_id, originator_id, originator_version, topic, state)
    if problem is not None:
        raise MalformedRow(problem)
    oid = originator_id.hex if isinstance(originator_id, UUID) else originator_id
    try:
        oid_bytes, topic_bytes = oid.encode(), topic.encode()
    except UnicodeEncodeError:  # a lone surrogate: no writer stores one
        raise MalformedRow("its text is not valid UTF-8") from None
    digest = hashlib.sha256()
    digest.update(previous)
    digest.update(notification_id.to_bytes(8, "big"))
    digest.update(_frame(oid_bytes))
    digest.update(originator_version.to_bytes(8, "big", signed=True))
    digest.update(_frame(topic_bytes))
    digest.update(_frame(bytes(state)))
    return digest.digest()


# No aggregate reaches this many versions: a stored version past it (or below 1) was edited.
MAX_VERSION = 2**62


def head_link(position: object, stored: object) -> bytes:
    """The chain head a write links its events to, as stored at `position`; a head that no
    writer could have stored (NULL, text, not 32 bytes) is damage: nothing is appended to it,
    since every later link would inherit the break."""
    if isinstance(stored, bytes | bytearray | memoryview) and len(stored) == len(GENESIS):
        return bytes(stored)
    raise IntegrityFailure(
        f"the newest chain link (position {position}) is damaged; nothing was written: run "
        "`secrets audit verify` and restore from a backup"
    )


def refuse_cut_log(head_position: int, first_new: int) -> None:
    """A write's first new position must be past the chain head. A link at or after it has
    lost its event: the log was cut (its newest rows deleted, links left; on SQLite the
    deleted row's id is handed out again, on PostgreSQL a reset sequence does the same).
    Damage, not a race to retry: nothing is appended to it."""
    if first_new <= head_position:
        # The head is the link that lacks its event (a forged link past the log's newest
        # event, or the events deleted under it): name it, not the write's own position,
        # which moves on with every retry and holds nothing wrong.
        raise IntegrityFailure(
            f"a link at position {head_position} has no event: the chain runs past the log's "
            "newest event (a link added, or the newest events deleted); nothing was written: "
            "run `secrets audit verify` and restore from a backup"
        )


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
        try:
            candidate = link(
                previous, position, row.originator_id, row.originator_version, row.topic, row.state
            )
        except MalformedRow:
            return None
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
        try:
            expected = link(
                previous,
                row.notification_id,
                row.originator_id,
                row.originator_version,
                row.topic,
                row.state,
            )
        except MalformedRow as malformed:
            fault = ChainFault(
                row.notification_id, "edited", f"the event's row is malformed: {malformed}"
            )
            return ChainReport(checked, checked - 1, previous, fault), verified
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


_HEAD = Struct(">QQ")  # notification id, length of the originator id
_SIZE = Struct(">Q")
_VERSION = Struct(">q")


@dataclass(frozen=True)
class FastWalk:
    """How far `verify_fast` got: `report` covers the events it checked (and a fault that
    `on_verified` reported, which ends the walk); `position` is the notification id whose
    link is `report.head` (0 before any). Unless `complete`, something after `position` did
    not line up and `verify` must walk on from there to find and name it."""

    report: ChainReport
    position: int
    complete: bool


def verify_fast(
    pages: Iterable[JoinedPage],
    *,
    topic: str,
    on_verified: Callable[[StoredRow, bytes], ChainFault | None],
    after: tuple[int, bytes] = (0, GENESIS),
    each: RowCheck | None = None,
) -> FastWalk:
    """The intact case of `verify` in one pass, for long logs.

    `pages` are pages of (notification id, originator id, originator version, topic, state,
    link or None) in ascending notification id order, each event joined with the link stored
    at its id, each page with the number of links stored in its id range (after the previous
    page, up to its last id); a final page with no rows counts the links past the last event.
    Equal counts and a link for every event mean links and events line up one to one, as
    `verify` checks pairwise. Links are computed exactly as `link` does (no `StoredRow` per
    event); only rows with `topic` are handed to `on_verified`. It stops at the first thing
    that is not plainly intact (a count or link that differs, a value of an unexpected type)
    without classifying it. `each` sees every row whose link checked out (id, originator id,
    version, topic, state) and may report a fault of its own, which ends the walk.
    """
    position, previous = after
    checked = 0
    sha256 = hashlib.sha256
    head = _HEAD.pack
    size = _SIZE.pack
    version_bytes = _VERSION.pack
    framed: dict[str, bytes] = {}  # topic -> its length-prefixed bytes (a few dozen)
    for rows, links in pages:
        if links != len(rows):
            return FastWalk(ChainReport(checked, checked, previous, None), position, False)
        for nid, oid, version, row_topic, state, stored in rows:
            try:
                # Exactly `link()`, inlined; a value `link()` would not take as it is (a
                # damaged row) raises, and `verify` takes over at this row.
                if type(oid) is str:
                    oid_bytes = oid.encode()
                elif type(oid) is UUID:
                    oid_bytes = oid.hex.encode()
                else:
                    raise TypeError(type(oid))
                topic_bytes = framed.get(row_topic)
                if topic_bytes is None:
                    if type(row_topic) is not str:
                        raise TypeError(type(row_topic))
                    topic_bytes = _frame(row_topic.encode())
                    if len(framed) < 256:  # bounded, whatever a damaged store holds
                        framed[row_topic] = topic_bytes
                if type(state) is not bytes:
                    raise TypeError(type(state))
                expected = sha256(
                    b"".join(
                        (
                            previous,
                            head(nid, len(oid_bytes)),
                            oid_bytes,
                            version_bytes(version),
                            topic_bytes,
                            size(len(state)),
                            state,
                        )
                    )
                ).digest()
            except Exception:
                expected = None
            if expected is None or expected != stored:
                return FastWalk(ChainReport(checked, checked, previous, None), position, False)
            if each is not None:
                found = each(nid, oid, version, row_topic, state)
                if found is not None:
                    return FastWalk(
                        ChainReport(checked + 1, checked, previous, found), position, True
                    )
            if row_topic == topic:
                found = on_verified(StoredRow(nid, oid, version, row_topic, state), expected)
                if found is not None:
                    return FastWalk(
                        ChainReport(checked + 1, checked, previous, found), position, True
                    )
            checked += 1
            position = nid
            previous = expected
    return FastWalk(ChainReport(checked, checked, previous, None), position, True)


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
    """What verification needs from a chained event store (SQLite: ledger/store/sqlite.py,
    PostgreSQL: ledger/store/postgres.py). Both yield in ascending notification id order,
    strictly after `start`."""

    def iter_rows(self, start: int = 0) -> Iterator[StoredRow]: ...

    def iter_links(self, start: int = 0) -> Iterator[tuple[int, bytes]]: ...


@runtime_checkable
class JoinedRecorder(Protocol):
    """A store that can also hand `verify_fast` its events joined with their links."""

    def iter_joined(self, start: int = 0) -> Iterator[JoinedPage]: ...


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
