"""The base aggregate whose events carry operator, correlation id and a controllable clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from eventsourcing.domain import Aggregate, Snapshot

from ledger import context


@dataclass(frozen=True)
class LedgerSnapshot(Snapshot):
    """The library's snapshot, under a class of this project (its stored topic is in the
    allow-list, ledger/codec/topics.py). Aggregate values that are not plain JSON
    (`Secret.versions`, `Operator.sessions`) are written by the transcodings
    (ledger/codec/transcodings.py), the one encoder of snapshot state."""


class LedgerAggregate(Aggregate):
    class Event(Aggregate.Event):
        operator: str = field(default_factory=context.current_operator.get, init=False)
        correlation_id: str = field(default_factory=context.correlation_id, init=False)

        @staticmethod
        def create_timestamp() -> datetime:
            return context.now()

    class Created(Event, Aggregate.Created):
        pass

    Snapshot = LedgerSnapshot
