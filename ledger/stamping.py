"""The base aggregate whose events carry operator, correlation id and a controllable clock."""

from __future__ import annotations

from dataclasses import field
from datetime import datetime

from eventsourcing.domain import Aggregate

from ledger import context


class LedgerAggregate(Aggregate):
    class Event(Aggregate.Event):
        operator: str = field(default_factory=context.current_operator.get, init=False)
        correlation_id: str = field(default_factory=context.correlation_id, init=False)

        @staticmethod
        def create_timestamp() -> datetime:
            return context.now()

    class Created(Event, Aggregate.Created):
        pass
