"""The base aggregate whose events carry operator, correlation id and a controllable clock."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate, Snapshot
from eventsourcing.utils import get_topic

from ledger import context
from ledger.codec import topics

_PACKED = "__dataclass_map__"


def _pack(value: Any) -> Any:
    """A dict of dataclass instances (`Secret.versions`, `Operator.sessions`) as JSON can
    carry it: a list of [key, topic, fields], so int keys stay ints and values keep their type."""
    if (
        isinstance(value, dict)
        and value
        and all(dataclasses.is_dataclass(v) and not isinstance(v, type) for v in value.values())
    ):
        return {
            _PACKED: [
                [k, get_topic(type(v)), {f.name: getattr(v, f.name) for f in dataclasses.fields(v)}]
                for k, v in value.items()
            ]
        }
    return value


def _unpack(value: Any) -> Any:
    """The dict `_pack` wrote. The classes come from the fixed list of packed value types
    (ledger/codec/topics.py), never from the stored text: a snapshot is data."""
    if isinstance(value, dict) and set(value) == {_PACKED}:
        packed = value[_PACKED]
        if not isinstance(packed, list):
            raise topics.UnknownTopic("a snapshot holds a malformed packed map")
        unpacked = {}
        for item in packed:
            if not (isinstance(item, list) and len(item) == 3 and isinstance(item[2], dict)):
                raise topics.UnknownTopic("a snapshot holds a malformed packed map")
            key, topic, fields = item
            unpacked[key] = topics.value_class(topic)(**fields)
        return unpacked
    return value


@dataclass(frozen=True)
class LedgerSnapshot(Snapshot):
    """The library's snapshot, able to hold the aggregates' dicts of frozen dataclasses
    (its JSON transcoder knows neither those classes nor non-string dict keys)."""

    @classmethod
    def take(cls, aggregate: Any) -> LedgerSnapshot:
        taken = super().take(aggregate)
        return dataclasses.replace(taken, state={k: _pack(v) for k, v in taken.state.items()})

    def mutate(self, _: None) -> Any:
        unpacked = dataclasses.replace(self, state={k: _unpack(v) for k, v in self.state.items()})
        return super(LedgerSnapshot, unpacked).mutate(None)


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
