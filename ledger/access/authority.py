"""Loading the aggregates an authority decision rests on (operators, the ledger settings)
without believing damaged history.

The library's repository decodes whatever the store holds and folds it: an edited role was
believed until someone ran `audit verify`, and an event that no longer decoded escaped as the
library's own exception (`internal error (TopicError)`), before verify itself could run. Here
every event folded is first checked against its link in the hash chain (the link stored at its
position, computed from the link stored before it), then decoded; either failing is
`DamagedHistory` naming the position. The snapshot an aggregate starts from is the snapshot
store's business (authenticated there); only what the repository folds on top is read here.

What this cannot see: an attacker who edits an event and recomputes every link after it (the
chain needs no secret). Signed checkpoints catch that, in `audit verify`, not on every load;
on load, only for what this host has already seen (ledger/integrity/seen_heads.py).
"""

from __future__ import annotations

import copy
import hmac
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from eventsourcing.application import Repository
from eventsourcing.persistence import EventStore, PersistenceError, StoredEvent

from ledger.errors import IntegrityFailure, LedgerError
from ledger.store.chain import GENESIS, link

# One event as an authority load reads it: (position, originator id as stored, originator
# version, topic, state, the link stored at its position or None, the link stored before it
# or None when there is none).
LinkedRow = tuple[int, Any, int, Any, Any, Any, Any]


class DamagedHistory(IntegrityFailure):
    """An event (or a snapshot) read for a decision failed its chain link or its decoding."""

    def __init__(self, position: int, kind: str, detail: str) -> None:
        super().__init__(
            f"the recorded history is damaged: {detail} (position {position}); nothing was "
            "decided on it; run `secrets audit verify` and restore from a backup"
        )
        self.position = position
        self.kind = kind  # the ChainFault kinds: edited | inserted | undecodable
        self.detail = detail
        self.recorded = False  # whether an integrity alarm of it could be appended


@runtime_checkable
class LinkedRecorder(Protocol):
    """A chained store that can read one aggregate's events with their chain links."""

    def select_linked(
        self, originator_id: UUID, gt: int | None, lte: int | None
    ) -> Sequence[LinkedRow]: ...


def check_row(row: LinkedRow) -> DamagedHistory | None:
    """Why this row cannot be believed, or None when its bytes make its stored link."""
    position, oid, version, topic, state, stored, previous = row
    if not isinstance(stored, bytes | bytearray | memoryview):
        return DamagedHistory(position, "inserted", "an event has no chain link")
    try:
        expected = link(
            bytes(previous) if previous is not None else GENESIS,
            position,
            oid,
            version,
            topic,
            bytes(state),
        )
    except Exception:  # a value of a type no writer stores: the row was edited
        return DamagedHistory(position, "edited", "an event's stored values are malformed")
    if not hmac.compare_digest(expected, bytes(stored)):
        return DamagedHistory(position, "edited", "an event's bytes do not match the chain")
    return None


class CheckedEventStore(EventStore[UUID]):
    """An event store whose reads check each event's link, then decode it, and remember the
    position of the event last handed to the fold (which the fold may still fail on: the
    aggregate class is resolved from the state when the first event is applied)."""

    def __init__(self, mapper: Any, recorder: Any) -> None:
        super().__init__(mapper, recorder)
        self._folding = threading.local()

    @property
    def folding(self) -> int | None:
        """The position of the event last handed out in this thread, None before any."""
        found: int | None = getattr(self._folding, "position", None)
        return found

    def forget(self) -> None:
        self._folding.position = None
        self._folding.read = None

    def read_rows(self, originator_id: UUID) -> dict[int, tuple[int, Any]]:
        """The rows of `originator_id` the last read in this thread checked: version ->
        (position, stored link); empty when that read was of another aggregate."""
        read = getattr(self._folding, "read", None)
        if read is None or read[0] != originator_id:
            return {}
        found: dict[int, tuple[int, Any]] = read[1]
        return found

    def get(
        self,
        originator_id: UUID,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Iterator[Any]:
        recorder = self.recorder
        assert isinstance(recorder, LinkedRecorder)
        rows = list(recorder.select_linked(originator_id, gt, lte))
        if desc:
            rows.reverse()
        if limit is not None:
            rows = rows[:limit]
        # Every link first: a fold must not start on history that is partly damaged.
        for row in rows:
            problem = check_row(row)
            if problem is not None:
                raise problem
        decoded = [(row[0], self._decode(originator_id, row)) for row in rows]
        self._folding.read = (originator_id, {row[2]: (row[0], row[5]) for row in rows})
        return self._handing_out(decoded)

    def _handing_out(self, decoded: list[tuple[int, Any]]) -> Iterator[Any]:
        for position, event in decoded:
            self._folding.position = position
            yield event

    def _decode(self, originator_id: UUID, row: LinkedRow) -> Any:
        position, _, version, topic, state, _, _ = row
        try:
            return self.mapper.to_domain_event(
                StoredEvent(originator_id, version, topic, bytes(state))
            )
        except Exception as exc:
            # The library's MapperDeserialisationError, TopicError, a JSON or a TypeError, an
            # IntegrityFailure of the mapper's own: all the same here, and none may escape as
            # an internal error. Its message is not repeated (it may quote stored bytes).
            raise DamagedHistory(
                position,
                "undecodable",
                f"an event cannot be decoded ({type(exc).__name__})",
            ) from None


def checked_repository(repository: Repository[UUID]) -> Repository[UUID]:
    """`repository` (its snapshot store and whatever else it was given) reading its events
    through a `CheckedEventStore`."""
    store = repository.event_store
    checked = copy.copy(repository)
    checked.event_store = CheckedEventStore(store.mapper, store.recorder)
    return checked


def load(repository: Repository[UUID], aggregate_id: UUID) -> Any:
    """The aggregate, folded from checked events; AggregateNotFoundError as the library's.
    Anything else that fails while loading (a snapshot that cannot be decoded, a fold that
    breaks, the mapper refusing a topic) is `DamagedHistory` too, with the position of the
    event being applied when there is one."""
    from eventsourcing.application import AggregateNotFoundError

    store = repository.event_store
    checked = store if isinstance(store, CheckedEventStore) else None
    if checked is not None:
        checked.forget()
    try:
        return repository.get(aggregate_id)
    except (AggregateNotFoundError, DamagedHistory, PersistenceError):
        raise  # a store that fails to answer (locked, restarting) has not shown damage
    except LedgerError as exc:
        if not isinstance(exc, IntegrityFailure):
            raise
        problem: Exception = exc
    except Exception as exc:  # the library's decoding and topic errors, a fold that breaks
        problem = exc
    position = checked.folding if checked is not None else None
    if position is not None:
        raise DamagedHistory(
            position, "undecodable", f"an event cannot be applied ({type(problem).__name__})"
        )
    # Nothing of the log handed out yet: the stored snapshot the load starts from.
    raise DamagedHistory(
        0,
        "snapshot",
        f"the snapshot of aggregate {aggregate_id} cannot be loaded ({type(problem).__name__})",
    )
