"""Audit rows read back from views.sqlite, checked against the events they claim to show.

views.sqlite is a cache that whoever can write the ledger's home can edit: an `audit_view`
row changed there showed in `audit log` as recorded history. Before rows are shown, each is
built again from the stored event at its position, by the same `Views._apply` the catch-up
runs, on a scratch database, and compared field by field. `_apply` needs two things it
remembers from earlier events: a secret's address and an operator's name. Both are taken as
the views claim them and believed only when they hash to the event's originator id (ids are
uuid5 of the address and of the name), so no state from the cache is trusted.

Cost: one read and decode of each shown event (consecutive positions in one query), the
same work as a catch-up of those events; docs/security.md has the figures.
"""

from __future__ import annotations

import dataclasses
import operator
import sqlite3
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import MapperDeserialisationError

from ledger.address import secret_id
from ledger.operator import operator_id
from projections import event_reader
from projections.views import PAGE, SCHEMA, AuditRow, Views

if TYPE_CHECKING:
    from projections.event_reader import Row


# An audit row's fields in order, as `_apply` returns them (`dataclasses.astuple` deep-copies:
# half the check's time).
_fields = operator.attrgetter(*(f.name for f in dataclasses.fields(AuditRow)))


class _Scratch(Views):
    """`Views._apply` on an in-memory database, remembering only verified addresses and
    names."""

    def __init__(self, reader: Any) -> None:
        self._addresses = {}
        self._operator_names = {}
        self._reader = reader
        self._db = sqlite3.connect(":memory:", isolation_level=None)
        self._db.executescript(SCHEMA)
        self._cur = self._db.cursor()

    def expected(self, row: Row, convert: Any, shown: AuditRow, claimed: dict[str, str]) -> Any:
        # Reads, denials, rejections (most rows): the catch-up's own shortcut, no event made.
        quick = self._reader.audit_row(row)
        if quick is not None:
            return quick
        position, _, _, topic, _ = row
        try:
            event, ts = self._reader.read_row(row, convert)
        except MapperDeserialisationError:
            return self._unreadable(position, topic)
        oid = event.originator_id.hex
        kind = type(event).__qualname__
        if kind.startswith("Secret."):
            address = (shown.environment, shown.service, shown.name)
            if all(type(p) is str for p in address) and _is(secret_id(*address), oid):  # type: ignore[arg-type]
                self._addresses[oid] = address  # type: ignore[assignment]
        elif kind.startswith("Operator."):
            name = claimed.get(oid)
            if name is not None and _is(operator_id(name), oid):
                self._operator_names[oid] = name
        # What `_apply` writes here comes from stored events and verified claims only, so it
        # may stay for the rows after (an operator registered in a row shown earlier).
        return self._apply(self._cur, position, event, ts)


def _is(found: UUID, oid: str) -> bool:
    return found.hex == oid


def _stored(recorder: Any, positions: list[int]) -> Iterator[tuple[Row, Any]]:
    """The stored rows at `positions` (ascending), consecutive ones read in one query."""
    i = 0
    while i < len(positions):
        run = 1
        while i + run < len(positions) and run < PAGE and positions[i + run] == positions[i] + run:
            run += 1
        start = positions[i]
        rows, convert = event_reader.read_rows(recorder, start - 1, run, start + run - 1)
        for row in rows:
            if row[0] > start + run - 1:
                break
            yield row, convert
        i += run


@dataclasses.dataclass(frozen=True)
class Checked:
    """What `check` found: rows the views hold that no stored event makes (edited, forged,
    at a position that holds no event), and rows of events that no longer decode (the log's
    damage, not the views': shown as the catch-up shows such an event, `Views._unreadable`)."""

    unfaithful: list[int]
    undecodable: dict[int, AuditRow]


def unfaithful(views: Views, rows: Iterable[AuditRow]) -> list[int]:
    """The positions of `rows` that are not what the stored event at that position makes
    (edited, forged, or at a position that holds no event)."""
    return check(views, rows).unfaithful


def check(views: Views, rows: Iterable[AuditRow]) -> Checked:
    """`rows` compared with the stored events at their positions."""
    shown = {r.position: r for r in rows}
    if not shown:
        return Checked([], {})
    claimed = {
        str(oid): str(name)
        for oid, name in views.db.execute("SELECT originator_id, name FROM operators_view")
    }
    scratch = _Scratch(views._reader)
    bad: list[int] = []
    undecodable: dict[int, AuditRow] = {}
    seen: set[int] = set()
    for row, convert in _stored(views.ledger.recorder, sorted(shown)):
        position = row[0]
        if position not in shown:
            continue
        seen.add(position)
        expected = tuple(scratch.expected(row, convert, shown[position], claimed))
        if expected == _fields(shown[position]):
            continue
        if expected == Views._unreadable(position, row[3]):
            undecodable[position] = AuditRow(*expected)
        else:
            bad.append(position)
    bad.extend(p for p in shown if p not in seen)
    return Checked(sorted(bad), undecodable)


def missing(views: Views, first: int) -> list[int]:
    """The positions from `first` up to the views' position that hold an event in the log but
    no row in the audit view. `check` sees only the rows a query gives: a row deleted from
    views.sqlite simply was not shown. Every event makes exactly one audit row, so the log's
    positions in the range (ids only, from its primary key) must all be there. A set, not a
    count: PostgreSQL's sequence leaves gaps, where a forged row could stand in for a deleted
    one. Cost: two reads of integers over the range (docs/reliability.md has the figures)."""
    positions = getattr(views.ledger.recorder, "positions", None)
    if positions is None:
        return []  # a store that cannot list its positions (none of this project's)
    with views.consistent_read() as last:
        if first > last:
            return []
        held = {
            int(r[0])
            for r in views.db.execute(
                "SELECT position FROM audit_view WHERE position BETWEEN ? AND ?", (first, last)
            )
        }
    logged: list[int] = positions(first, last)
    return [p for p in logged if p not in held]
