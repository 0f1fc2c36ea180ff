"""The allow-list of stored types (ledger/codec/topics.py) against the classes the code defines, and
the mapper's refusals, without any service."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import JSONTranscoder, MapperDeserialisationError, StoredEvent
from eventsourcing.utils import get_topic
from hypothesis import given
from hypothesis import strategies as st

import ledger.application
import ledger.checkpoint
import ledger.records
import ledger.rotation_records
from ledger.codec import topics
from ledger.codec.decoding import (
    AllowListMapper,
    UndecodableData,
    is_sealed,
    seal,
    seal_key,
    unseal,
)
from ledger.errors import IntegrityFailure
from ledger.stamping import LedgerAggregate, LedgerSnapshot


def _subclasses(cls: type[Any]) -> Iterator[type[Any]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _defined() -> tuple[set[str], set[str]]:
    aggregates = {a for a in _subclasses(LedgerAggregate) if not a.__module__.startswith("tests")}
    events = {
        get_topic(v)
        for a in aggregates
        for k, v in vars(a).items()
        if isinstance(v, type) and issubclass(v, DomainEvent) and k not in ("Event", "Created")
    }
    return {get_topic(a) for a in aggregates}, events


def test_every_aggregate_and_event_class_is_listed_and_nothing_else() -> None:
    aggregates, events = _defined()
    assert aggregates == topics.AGGREGATE_TOPICS
    assert set(topics.EVENT_OWNERS) == events
    assert get_topic(LedgerSnapshot) == topics.SNAPSHOT_TOPIC
    snapshotted = {get_topic(c) for c in ledger.application.SecretsLedger.snapshotting_intervals}
    assert snapshotted == topics.SNAPSHOTTED_AGGREGATES


def _mapper() -> AllowListMapper:
    from eventsourcing.persistence import DatetimeAsISO, UUIDAsHex

    from ledger.codec.transcodings import ALL

    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DatetimeAsISO(), *ALL):
        transcoder.register(transcoding)
    return AllowListMapper(transcoder=transcoder)


@pytest.mark.parametrize(
    "topic", ["os:system", "this:s", "ledger.secret:Secret", "ledger.secret:Secret.Event", ""]
)
def test_an_unlisted_topic_is_an_integrity_failure_before_any_import(topic: str) -> None:
    stored = StoredEvent(uuid4(), 1, topic, b"{}")
    with pytest.raises(UndecodableData) as raised:
        _mapper().to_domain_event(stored)
    assert isinstance(raised.value, IntegrityFailure)
    assert isinstance(raised.value, MapperDeserialisationError)


@given(st.dictionaries(st.text(max_size=12), st.text(max_size=12) | st.integers(), max_size=6))
def test_any_state_of_a_listed_topic_decodes_or_fails_as_damage(state: dict[str, Any]) -> None:
    stored = StoredEvent(
        uuid4(), 1, "ledger.records:Denial.AccessDenied", json.dumps(state).encode()
    )
    with contextlib.suppress(UndecodableData):
        _mapper().to_domain_event(stored)


def test_a_seal_binds_the_snapshot_to_its_aggregate_version_and_bytes() -> None:
    key, other = bytes(range(32)), bytes(32)
    link = bytes(range(1, 33))
    oid = uuid4()
    sealed = seal(key, StoredEvent(oid, 50, topics.SNAPSHOT_TOPIC, b'{"a":1}'), link)
    assert is_sealed(sealed)
    opened = unseal(key, StoredEvent(oid.hex, 50, sealed.topic, sealed.state), link)  # type: ignore[arg-type]
    assert opened is not None and opened.state == b'{"a":1}'
    assert unseal(other, sealed, link) is None
    assert unseal(key, StoredEvent(uuid4(), 50, sealed.topic, sealed.state), link) is None
    assert unseal(key, StoredEvent(oid, 51, sealed.topic, sealed.state), link) is None
    flipped = bytearray(sealed.state)
    flipped[-2] ^= 1
    assert unseal(key, StoredEvent(oid, 50, sealed.topic, bytes(flipped)), link) is None
    assert unseal(key, StoredEvent(oid, 50, sealed.topic, b'{"a":1}'), link) is None


def test_a_seal_binds_the_snapshot_to_its_ledger_and_its_history() -> None:
    fingerprint_key = bytes(range(32))
    key = seal_key(fingerprint_key, "a" * 32)
    link = bytes(range(1, 33))
    sealed = seal(key, StoredEvent(uuid4(), 50, topics.SNAPSHOT_TOPIC, b'{"a":1}'), link)
    assert unseal(key, sealed, link) is not None
    # Another ledger sharing the fingerprint key (`ledger import-key` of the same key).
    assert unseal(seal_key(fingerprint_key, "b" * 32), sealed, link) is None
    # A copy of the same ledger (`ledger copy`: same uid, same key) whose history diverged.
    assert unseal(key, sealed, bytes(32)) is None
    assert unseal(key, sealed, None) is None


def _denial(**changes: Any) -> StoredEvent:
    state: dict[str, Any] = {
        "timestamp": {"_type_": "datetime_iso", "_data_": "2026-01-01T00:00:00+00:00"},
        "originator_topic": "ledger.records:Denial",
        "operator": "anonymous",
        "correlation_id": "c",
        "action": "get",
        "reason": "no session",
        "environment": None,
        "service": None,
        "name": None,
    }
    state.update(changes)
    state = {k: v for k, v in state.items() if v is not _DROP}
    return StoredEvent(uuid4(), 1, "ledger.records:Denial.AccessDenied", json.dumps(state).encode())


_DROP = object()


def test_a_well_formed_state_decodes() -> None:
    event: Any = _mapper().to_domain_event(_denial())
    assert event.action == "get" and event.environment is None


@pytest.mark.parametrize(
    "changes",
    [
        {"mutate": "x"},  # an extra key would shadow the event's method
        {"apply": 1},
        {"reason": _DROP},
        {"action": ["get"]},
        {"operator": None},
        {"environment": 7},
        {"environment": True},
        {"reason": "\ud800"},  # a lone surrogate cannot be printed
        {"originator_topic": "ledger.records:Rejection"},
        {"timestamp": "2026-01-01"},
        {"timestamp": {"_type_": "datetime_iso", "_data_": "2026-01-01T00:00:00"}},
    ],
    ids=lambda c: ",".join(c),
)
def test_a_state_that_does_not_fit_its_class_is_damage(changes: dict[str, Any]) -> None:
    with pytest.raises(UndecodableData):
        _mapper().to_domain_event(_denial(**changes))


def test_a_field_with_a_plain_default_may_be_absent_from_an_older_state() -> None:
    """A field added later with a default: older stored states lack it and still decode;
    a field with a default factory (the acting operator) must be stored."""
    from dataclasses import dataclass

    from ledger.codec.state_shapes import conforms, shape_of

    @dataclass(frozen=True)
    class Later:
        name: str
        added: int | None = None

    shape = shape_of(Later)
    assert conforms({"name": "a"}, shape) == ""
    assert conforms({"name": "a", "added": 3}, shape) == ""
    assert conforms({"name": "a", "added": "3"}, shape) != ""
    assert conforms({"added": 3}, shape) != ""
    assert conforms(dict(vars(_mapper().to_domain_event(_denial()))), shape_of(Later)) != ""
    with pytest.raises(UndecodableData):
        _mapper().to_domain_event(_denial(operator=_DROP))
