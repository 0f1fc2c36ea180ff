"""Stored bytes turned back into this project's objects, and nothing else.

`AllowListMapper` is the library's mapper with the checks storage needs once it is hostile:
the row's topic is looked up in ledger/topics.py before anything is resolved, a created
event's `originator_topic` must name the aggregate that owns the event class, a snapshot's
`topic` an aggregate that takes snapshots, and any failure on the way (bad JSON, a state that
does not fit its class, an unknown topic) is `UndecodableData`: an integrity failure that
names the row, and still a `MapperDeserialisationError` for the readers that skip such rows.

`SealedSnapshotStore` authenticates snapshots (a cache outside the hash chain): each stored
snapshot is `MAGIC || HMAC-SHA256(key, id, version, topic, state) || state` under a key derived
from the ledger's fingerprint key, which only the keychain holds. A load uses a snapshot only
when its seal verifies; otherwise it folds the aggregate's events and says so once.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol, Snapshot
from eventsourcing.persistence import (
    EventStore,
    Mapper,
    MapperDeserialisationError,
    Recording,
    StoredEvent,
)

from ledger import topics
from ledger.errors import IntegrityFailure
from ledger.state_shapes import conforms, shape_of

MAGIC = b"slsnap1:"
_MAC_SIZE = 32
_KEY_INFO = b"secrets-ledger snapshot seal v1"


class UndecodableData(IntegrityFailure, MapperDeserialisationError):
    """A stored row that does not decode into one of this project's types (damaged or forged)."""


def _where(stored: StoredEvent) -> str:
    position = getattr(stored, "id", None)
    at = f"position {position} " if isinstance(position, int) else ""
    return f"{at}(aggregate {stored.originator_id} version {stored.originator_version})"


def _damaged(stored: StoredEvent, why: str) -> UndecodableData:
    return UndecodableData(
        f"a recorded event cannot be decoded: {why}, at {_where(stored)}; the ledger was "
        "altered or damaged: run `secrets audit verify`"
    )


_POSITION_FIELDS = ("originator_id", "originator_version")


class AllowListMapper(Mapper[UUID]):
    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        try:
            topics.stored_class(stored_event.topic)
        except topics.UnknownTopic as exc:
            raise _damaged(stored_event, str(exc)) from None
        try:
            event: Any = super().to_domain_event(stored_event)
        except Exception as exc:
            raise _damaged(stored_event, f"its state does not fit ({type(exc).__name__})") from None
        state = {k: v for k, v in vars(event).items() if k not in _POSITION_FIELDS}
        problem = conforms(state, shape_of(type(event)))
        if problem:
            raise _damaged(stored_event, problem)
        self._check_named_classes(stored_event, event)
        return event  # type: ignore[no-any-return]

    @staticmethod
    def _check_named_classes(stored: StoredEvent, event: Any) -> None:
        """The classes a decoded state names, before anything resolves them (`mutate`)."""
        if isinstance(event, Snapshot):
            named, allowed = event.topic, topics.SNAPSHOTTED_AGGREGATES
        elif "originator_topic" in vars(event):
            named = event.originator_topic
            allowed = frozenset({topics.EVENT_OWNERS[stored.topic]})
        else:
            return
        if type(named) is not str or named not in allowed:
            shown = repr(named)[:80] if isinstance(named, str) else type(named).__name__
            raise _damaged(stored, f"it names a class it may not ({shown})")


def seal_key(fingerprint_key: bytes) -> bytes:
    """The snapshot sealing key: HKDF from the fingerprint key, for this one purpose."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_INFO).derive(
        fingerprint_key
    )


def _id_text(originator_id: object) -> str:
    """One text per id, however a recorder hands it over (a UUID, or its hex as stored)."""
    try:
        return str(UUID(str(originator_id)))
    except ValueError:
        return str(originator_id)


def _mac(key: bytes, originator_id: object, version: int, topic: str, state: bytes) -> bytes:
    parts = (
        _id_text(originator_id).encode(),
        str(version).encode(),
        topic.encode("utf-8", "surrogatepass"),
        state,
    )
    message = b"".join(len(p).to_bytes(8, "big") + p for p in parts)
    return hmac.new(key, message, hashlib.sha256).digest()


def seal(key: bytes, stored: StoredEvent) -> StoredEvent:
    mac = _mac(key, stored.originator_id, stored.originator_version, stored.topic, stored.state)
    return StoredEvent(
        originator_id=stored.originator_id,
        originator_version=stored.originator_version,
        topic=stored.topic,
        state=MAGIC + mac + stored.state,
    )


def is_sealed(stored: StoredEvent) -> bool:
    state = stored.state
    return isinstance(state, bytes | bytearray | memoryview) and bytes(state[: len(MAGIC)]) == MAGIC


def unseal(key: bytes, stored: StoredEvent) -> StoredEvent | None:
    """The snapshot as the mapper wrote it when its seal verifies under `key`, else None."""
    if not is_sealed(stored):
        return None
    body = bytes(stored.state)[len(MAGIC) :]
    mac, state = body[:_MAC_SIZE], body[_MAC_SIZE:]
    if type(stored.topic) is not str or type(stored.originator_version) is not int:
        return None
    try:
        expected = _mac(key, stored.originator_id, stored.originator_version, stored.topic, state)
    except (UnicodeError, TypeError, ValueError):
        return None
    if len(mac) != _MAC_SIZE or not hmac.compare_digest(mac, expected):
        return None
    return StoredEvent(
        originator_id=stored.originator_id,
        originator_version=stored.originator_version,
        topic=stored.topic,
        state=state,
    )


class SealedSnapshotStore(EventStore[UUID]):
    """Snapshots written sealed and read only when the seal verifies.

    `key` gives the sealing key, or None where it cannot be had (no keychain here, a command
    that must not open it): then no snapshot is written and none is used. `ignored` is called
    with a description of each stored snapshot a load passed over.
    """

    def __init__(
        self,
        mapper: Mapper[UUID],
        recorder: Any,
        key: Callable[[], bytes | None],
        ignored: Callable[[str], None],
        skip: Callable[[UUID], bool],
    ) -> None:
        super().__init__(mapper=mapper, recorder=recorder)
        self._key = key
        self._ignored = ignored
        self._skip = skip

    def put(
        self, domain_events: Sequence[DomainEventProtocol[UUID]], **kwargs: Any
    ) -> list[Recording[UUID]]:
        key = self._key()
        if key is None:
            return []
        sealed = [seal(key, self.mapper.to_stored_event(e)) for e in domain_events]
        self.recorder.insert_events(sealed, **kwargs)
        return []

    def get(
        self,
        originator_id: UUID,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Iterator[DomainEventProtocol[UUID]]:
        if self._skip(originator_id):
            return iter(())
        rows = self.recorder.select_events(
            originator_id=originator_id, gt=gt, lte=lte, desc=desc, limit=limit
        )
        if not rows:
            return iter(())
        key = self._key()
        trusted: list[DomainEventProtocol[UUID]] = []
        for row in rows:
            opened = unseal(key, row) if key is not None else None
            if opened is None:
                if key is not None:
                    self._ignored(
                        f"the stored snapshot of {row.originator_id} at version "
                        f"{row.originator_version} does not authenticate"
                    )
                # Without a key nothing can be believed: fold the events instead.
                return iter(())
            try:
                trusted.append(self.mapper.to_domain_event(opened))
            except UndecodableData as exc:
                self._ignored(str(exc))
                return iter(())
        return iter(trusted)
