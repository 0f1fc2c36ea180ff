"""The base aggregate whose events carry operator, correlation id and a controllable clock."""

from __future__ import annotations

import dataclasses
from dataclasses import field
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate, Snapshot
from eventsourcing.utils import get_topic, resolve_topic

from ledger import context

# Markers of the snapshot state encoding below; no aggregate attribute uses these names.
_RECORD = "__ledger_record__"
_INT_KEYS = "__ledger_int_keys__"


def _encode(value: Any) -> Any:
    """Aggregate state in terms the library's JSON transcoder round-trips exactly.

    The transcoder knows neither our frozen dataclasses (`Version`, `Session`) nor that JSON
    turns integer dictionary keys (version numbers) into strings.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {_RECORD: get_topic(type(value)), "fields": fields}
    if isinstance(value, dict):
        if value and all(isinstance(k, int) and not isinstance(k, bool) for k in value):
            return {_INT_KEYS: [[k, _encode(v)] for k, v in value.items()]}
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if _RECORD in value:
            cls: Any = resolve_topic(value[_RECORD])
            if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)) or not (
                cls.__module__.startswith("ledger.")
            ):
                raise ValueError("snapshot names a record type outside the ledger")
            return cls(**{k: _decode(v) for k, v in value["fields"].items()})
        if _INT_KEYS in value:
            return {int(k): _decode(v) for k, v in value[_INT_KEYS]}
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


class LedgerSnapshot(Snapshot):
    """A snapshot whose state survives the JSON transcoder (see `_encode`)."""

    @classmethod
    def take(cls, aggregate: Any) -> LedgerSnapshot:
        plain = super().take(aggregate)
        return cls(
            originator_id=plain.originator_id,
            originator_version=plain.originator_version,
            timestamp=plain.timestamp,
            topic=plain.topic,
            state=_encode(plain.state),
        )

    def mutate(self, _: None) -> Any:
        decoded = Snapshot(
            originator_id=self.originator_id,
            originator_version=self.originator_version,
            timestamp=self.timestamp,
            topic=self.topic,
            state=_decode(self.state),
        )
        return decoded.mutate(None)


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
