"""Stored events read as plain rows and decoded into domain events, with a shortcut for what
nearly every stored event is: shared by the views' catch-up (projections/views.py) and the
replay fold (projections/replay.py), the two places that read the whole log.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    DatetimeAsISO,
    JSONTranscoder,
    Mapper,
    Notification,
    find_id_convertor,
)

from ledger.codec import topics
from ledger.codec.decoding import AllowListMapper, UndecodableData
from ledger.codec.state_shapes import conforms, shape_of
from ledger.records import Denial, ReadReceipt, Rejection
from ledger.store.chain import ChainFault, RowCheck
from projections.audit_codes import EVENT_CODES
from projections.timefmt import iso

# A stored event as a recorder's `select_rows` gives it: (id, originator id as stored,
# version, topic, state).
Row = tuple[int, Any, int, str, Any]


def same_id(value: Any) -> Any:
    """The conversion of originator ids that are already what the mapper takes."""
    return value


def read_rows(
    recorder: Any, start: int, limit: int, stop: int | None = None
) -> tuple[list[Row], Callable[[Any], Any]]:
    """The stored events after `start` (at most `limit`; a recorder without `select_rows`
    stops at `stop`) as rows, and the conversion of their originator ids: plain tuples from
    a recorder that reads them (`select_rows`: SQLite), else the library's notifications
    taken apart. A `sqlite3.Row`, a `UUID` and a frozen `Notification` per event cost more
    than decoding it, and most events are never decoded (`replay._is_folded`)."""
    select_rows = getattr(recorder, "select_rows", None)
    if select_rows is not None:
        rows: list[Row] = select_rows(start, limit)
        convert: Callable[[Any], Any] = recorder.convert_originator_id
        return rows, convert
    page = recorder.select_notifications(
        start=start, limit=limit, stop=stop, inclusive_of_start=False
    )
    return [(n.id, n.originator_id, n.originator_version, n.topic, n.state) for n in page], same_id


# What the library's `DatetimeAsISO` writes for a UTC instant (`datetime.isoformat()`), in the
# one layout whose `iso()` text is a slice of it; hours stop at 23 and seconds at 59, so no
# reading of the digits can roll over into another minute or day (ASCII digits only).
UTC_STAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{6})?\+00:00"
)
# The transcoder's JSON decoder without its object hook, called as `decode` would call it.
_SCAN_JSON: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_SECRET_READ: type[Any] = ReadReceipt.SecretRead  # type: ignore[attr-defined]
READ_CODE, READ_ACTION = EVENT_CODES[_SECRET_READ.__qualname__]


def read_detail(version: int, purpose: str | None) -> str:
    """A read's audit detail: its version, and the consumer run that read it, if any."""
    return f"v{version}" if purpose is None else f"v{version} ({purpose})"


def _parse(stored: Any) -> tuple[dict[str, Any], datetime, str] | None:
    """(decoded state, its timestamp, the `iso()` text of it) for stored bytes the shortcut
    takes (see `EventReader`), else None."""
    if type(stored) is not bytes or stored.count(b"_type_") != 1 or b"\\" in stored:
        return None
    try:
        text = stored.decode("utf8")
        state, end = _SCAN_JSON(text, 0)
    except Exception:  # StopIteration, ValueError, RecursionError: the mapper's to say
        return None
    if end != len(text):  # whitespace around the document: the mapper's to say
        return None
    if type(state) is not dict or "class_version" in state:
        return None
    stamp = state.get("timestamp")
    if type(stamp) is not dict or len(stamp) != 2 or stamp.get("_type_") != "datetime_iso":
        return None
    stamped = stamp.get("_data_")
    if type(stamped) is not str or UTC_STAMP.fullmatch(stamped) is None:
        return None
    try:
        when = datetime.fromisoformat(stamped)  # 30 February: the mapper's to say
    except ValueError:
        return None
    return state, when, (stamped[:23] if len(stamped) == 32 else stamped[:19] + ".000") + "Z"


# The kinds `EventReader.audit_row` builds, and the attributes each audit row shows.
_READ_KEYS = ("operator", "correlation_id", "environment", "service", "name", "version")
_DENIAL_KEYS = ("operator", "correlation_id", "environment", "service", "name", "action", "reason")
_REJECTION_KEYS = ("operator", "correlation_id", "environment", "service", "name", "rule")
_AUDIT_ONLY: dict[type[Any], tuple[str, ...]] = {
    _SECRET_READ: _READ_KEYS,
    Denial.AccessDenied: _DENIAL_KEYS,  # type: ignore[attr-defined]
    Rejection.ValidationFailed: _REJECTION_KEYS,  # type: ignore[attr-defined]
}
# How the SQLite recorder stores an id (`UUID.hex`; or `str(UUID)`): what `UUID(text)` reads
# back without fail.
_CANONICAL_ID = re.compile(
    r"[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)


class EventReader:
    """`mapper.to_domain_event(notification)` and the event's `iso()` timestamp, with a
    shortcut for what nearly every stored event is.

    The shortcut parses the state with the same JSON decoder minus the transcoder's object
    hook, and builds the event as the mapper does; the timestamp text is sliced from the
    stored one instead of formatted from a datetime (a third of the fold's own work). It is
    taken only where its event is provably the mapper's: no cipher or compressor, the
    library's JSON transcoder and datetime transcoding, a class without upcasting and UUID
    ids, a state whose bytes hold one `_type_` and no backslash (so the timestamp is the one
    transcoded object: no escaped key can spell another), and a timestamp in the canonical
    UTC layout (`UTC_STAMP`). Everything else, damaged bytes included, goes through the
    mapper, which raises exactly as before. tests/test_views.py compares both on every kind
    of event.
    """

    def __init__(self, mapper: Mapper[Any]) -> None:
        self._mapper = mapper
        transcoder = mapper.transcoder
        self.shortcut = (
            type(mapper).to_domain_event
            in (Mapper.to_domain_event, AllowListMapper.to_domain_event)
            and mapper.cipher is None
            and mapper.compressor is None
            and isinstance(transcoder, JSONTranscoder)
            and type(transcoder).decode is JSONTranscoder.decode
            and type(transcoder)._decode_obj is JSONTranscoder._decode_obj
            and type(transcoder.names.get("datetime_iso")) is DatetimeAsISO
        )
        # topic -> (event class, id convertor, the aggregate it may name),
        # or None where the shortcut does not apply
        self._classes: dict[str, _Found | None] = {}
        # topic -> `audit_row`'s plan, or None
        self._plans: dict[str, tuple[str, tuple[str, ...], str, str] | None] = {}

    def read(self, notification: Notification) -> tuple[Any, str]:
        """(event, iso timestamp); MapperDeserialisationError where the mapper raises it."""
        if self.shortcut:
            found = self._shortcut(
                notification.state,
                notification.originator_id,
                notification.originator_version,
                notification.topic,
            )
            if found is not None:
                return found
        event: Any = self._mapper.to_domain_event(notification)
        return event, iso(event.timestamp)

    def read_row(self, row: Row, convert: Callable[[Any], Any]) -> tuple[Any, str]:
        """`read` of the notification a stored row stands for: `row` is (id, originator id
        as stored, version, topic, state), `convert` what the recorder makes of a stored
        originator id (`select_rows`, `convert_originator_id`)."""
        position, stored_id, version, topic, state = row
        try:
            originator_id = convert(stored_id)
        except Exception:  # not an id any writer stores (text that is no UUID, a BLOB, NULL)
            raise UndecodableData(
                f"a recorded event cannot be decoded: its originator id is malformed, at "
                f"position {position}; the ledger was altered or damaged: run "
                "`secrets audit verify`"
            ) from None
        if self.shortcut:
            found = self._shortcut(state, originator_id, version, topic)
            if found is not None:
                return found
        event: Any = self._mapper.to_domain_event(
            Notification(
                id=position,
                originator_id=originator_id,
                originator_version=version,
                topic=topic,
                state=state,
            )
        )
        return event, iso(event.timestamp)

    def _shortcut(
        self, stored: Any, originator_id: Any, version: Any, topic: str
    ) -> tuple[Any, str] | None:
        if type(originator_id) is not UUID:
            return None
        try:
            found = self._classes[topic]
        except KeyError:
            found = self._classes[topic] = self._class_of(topic)
        if found is None:
            return None
        parsed = _parse(stored)
        if parsed is None:
            return None
        state, when, ts = parsed
        cls, convert, owner = found
        state["timestamp"] = when
        if not _fits(state, cls, owner):  # the mapper's to refuse
            return None
        state["originator_id"] = convert(originator_id)
        state["originator_version"] = version
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", state)
        return event, ts

    def audit_row(self, row: Row) -> tuple[Any, ...] | None:
        """The audit row `Views._apply` gives for a stored row of a kind that changes no
        other view and is not folded for replay (reads, denials, validation failures: 85%
        of a busy log), built from the decoded state without making the event; None for any
        other kind or wherever the shortcut would not take the row (the caller then reads
        the event). Needs the row's originator id in the canonical text the recorder writes
        (so that converting it, on the way to the event, could not fail) and every attribute
        the row shows in the state (so that no class default stands in for one)."""
        if not self.shortcut:
            return None
        position, stored_id, _, topic, stored = row
        try:
            plan = self._plans[topic]
        except KeyError:
            plan = self._plans[topic] = self._plan_of(topic)
        if plan is None or type(stored_id) is not str or _CANONICAL_ID.fullmatch(stored_id) is None:
            return None
        parsed = _parse(stored)
        if parsed is None:
            return None
        state, when, ts = parsed
        kind, keys, code, action = plan
        try:
            found = self._classes[topic]
        except KeyError:
            found = self._classes[topic] = self._class_of(topic)
        state["timestamp"] = when
        if found is None or not _fits(state, found[0], found[2]):
            return None
        operator, correlation_id = state["operator"], state["correlation_id"]
        target = state["environment"], state["service"], state["name"]
        if keys is _READ_KEYS:
            detail = read_detail(state["version"], state.get("purpose"))
            done, outcome = action, "success"
        elif keys is _DENIAL_KEYS:
            done, outcome, detail = state["action"], "denied", state["reason"]
        else:
            done, outcome, detail = action, "rejected", state["rule"]
        return (position, ts, code, kind, operator, done, *target, outcome, correlation_id, detail)

    def _plan_of(self, topic: str) -> tuple[str, tuple[str, ...], str, str] | None:
        """(kind, attributes read, code, action) for the kinds `audit_row` builds."""
        found = self._class_of(topic)
        if found is None:
            return None
        cls = found[0]
        kind = cls.__qualname__
        keys = _AUDIT_ONLY.get(cls)
        if keys is None:
            return None
        # Instance attributes only: a descriptor on the class would answer instead.
        if any(hasattr(inspect.getattr_static(cls, k, None), "__get__") for k in keys):
            return None
        code, action = READ_CODE, READ_ACTION
        if keys is not _READ_KEYS:
            code, action = EVENT_CODES.get(kind, ("HBSE-000", kind))
        return kind, keys, code, action

    @staticmethod
    def _class_of(topic: str) -> _Found | None:
        try:
            cls = topics.stored_class(topic)  # never an import chosen by the stored topic
            if getattr(cls, "class_version", 1) != 1 or topic not in topics.EVENT_OWNERS:
                return None
            convert = find_id_convertor(cls, UUID)  # type: ignore[arg-type]
            return cls, convert, topics.EVENT_OWNERS[topic]
        except Exception:  # the mapper raises it again
            return None


# (event class, id convertor, the aggregate topic it may name)
_Found = tuple[type[Any], Callable[[Any], Any], str]


def _fits(state: dict[str, Any], cls: type[Any], owner: str) -> bool:
    """Whether AllowListMapper would build this state's event without a complaint: exactly the
    class's fields, each of its type (ledger/codec/state_shapes.py), and a created event's
    `originator_topic` naming the aggregate that owns the class."""
    shape = shape_of(cls)
    if conforms(state, shape):
        return False
    return "originator_topic" not in shape.allowed or state.get("originator_topic") == owner


def undecodable_check(mapper: Mapper[Any]) -> RowCheck:
    """`verify_history`'s check that each event decodes (ledger/integrity/verify.py): `read_row`,
    whose shortcut gives the mapper's answer at twice its speed, for any stored id."""
    reader = EventReader(mapper)
    read, audit_row = reader.read_row, reader.audit_row

    def convert(stored: Any) -> Any:
        return stored if type(stored) is UUID else UUID(stored)

    def check(position: int, oid: Any, version: Any, topic: Any, state: Any) -> ChainFault | None:
        row = (position, oid, version, topic, state)
        try:
            # Reads, denials, rejections (most of a log): their audit row is the mapper's
            # answer too, without making the event.
            if audit_row(row) is None:
                read(row, convert)
        except Exception as exc:  # whatever the bytes make the decoding raise: damage
            # Not the exception's message: it may quote stored bytes.
            return ChainFault(
                position, "undecodable", f"the event cannot be decoded ({type(exc).__name__})"
            )
        return None

    return check
