"""Stored bytes turned back into this project's objects, and nothing else.

`AllowListMapper` is the library's mapper with the checks storage needs once it is hostile:
the row's topic is looked up in ledger/codec/topics.py before anything is resolved, a created
event's `originator_topic` must name the aggregate that owns the event class, a snapshot's
`topic` an aggregate that takes snapshots, and any failure on the way (bad JSON, a state that
does not fit its class, an unknown topic) is `UndecodableData`: an integrity failure that
names the row, and still a `MapperDeserialisationError` for the readers that skip such rows.

`SealedSnapshotStore` authenticates snapshots (a cache outside the hash chain): each stored
snapshot is `MAGIC || HMAC-SHA256(key, id, version, topic, link, state) || state` under a key
derived from the ledger's fingerprint key (which only the keychain holds) and its ledger uid,
where `link` is the chain link stored at the position of the aggregate's event `version`. The
fingerprint key is shared by every copy of a ledger (`ledger copy`, `ledger import-key`), and
a copy keeps the uid: the link is what tells two copies' diverged histories apart, so a
snapshot sealed in one is not accepted by another. A load uses a snapshot only when its seal
verifies; otherwise it folds the aggregate's events and says so once. Seals of the first
format (`LEGACY_MAGIC`: no uid, no link) are never used; `doctor --repair` removes them.
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

from ledger.codec import topics
from ledger.codec.state_shapes import conforms, shape_of
from ledger.errors import IntegrityFailure

MAGIC = b"slsnap2:"
LEGACY_MAGIC = b"slsnap1:"
_MAC_SIZE = 32
_KEY_INFO = b"secrets-ledger snapshot seal v2\x00"


class UndecodableData(IntegrityFailure, MapperDeserialisationError):
    """A stored row that does not decode into one of this project's types (damaged or forged)."""

    stored: StoredEvent | None = None
    why: str = ""

    def at(self, position: int | None) -> UndecodableData:
        """The same error naming the row's position, for a caller that read the row without
        it (a repository load) and has looked it up."""
        if self.stored is None or position is None:
            return self
        return _damaged(self.stored, self.why, position)


def _where(stored: StoredEvent, position: object = None) -> str:
    position = getattr(stored, "id", None) if position is None else position
    at = f"position {position} " if isinstance(position, int) else ""
    return f"{at}(aggregate {stored.originator_id} version {stored.originator_version})"


def _damaged(stored: StoredEvent, why: str, position: int | None = None) -> UndecodableData:
    error = UndecodableData(
        f"a recorded event cannot be decoded: {why}, at {_where(stored, position)}; the ledger "
        "was altered or damaged: run `secrets audit verify`"
    )
    error.stored, error.why = stored, why
    return error


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


def derive_key(fingerprint_key: bytes, info: bytes) -> bytes:
    """A key for one purpose (`info`), derived from the fingerprint key by HKDF."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(fingerprint_key)


def seal_key(fingerprint_key: bytes, ledger_uid: str) -> bytes:
    """The snapshot sealing key of the ledger `ledger_uid`."""
    return derive_key(fingerprint_key, _KEY_INFO + ledger_uid.encode("utf-8", "surrogatepass"))


def _id_text(originator_id: object) -> str:
    """One text per id, however a recorder hands it over (a UUID, or its hex as stored)."""
    try:
        return str(UUID(str(originator_id)))
    except ValueError:
        return str(originator_id)


def _mac(
    key: bytes, originator_id: object, version: int, topic: str, link: bytes, state: bytes
) -> bytes:
    parts = (
        _id_text(originator_id).encode(),
        str(version).encode(),
        topic.encode("utf-8", "surrogatepass"),
        link,
        state,
    )
    message = b"".join(len(p).to_bytes(8, "big") + p for p in parts)
    return hmac.new(key, message, hashlib.sha256).digest()


def seal(key: bytes, stored: StoredEvent, link: bytes) -> StoredEvent:
    """`stored` sealed under `key`, bound to `link`: the chain link of the aggregate's event
    at the snapshot's version."""
    mac = _mac(
        key, stored.originator_id, stored.originator_version, stored.topic, link, stored.state
    )
    return StoredEvent(
        originator_id=stored.originator_id,
        originator_version=stored.originator_version,
        topic=stored.topic,
        state=MAGIC + mac + stored.state,
    )


def _starts(stored: StoredEvent, magic: bytes) -> bool:
    state = stored.state
    return isinstance(state, bytes | bytearray | memoryview) and bytes(state[: len(magic)]) == magic


def is_sealed(stored: StoredEvent) -> bool:
    return _starts(stored, MAGIC)


def is_legacy_sealed(stored: StoredEvent) -> bool:
    """Sealed in the first format (bound to neither the ledger nor its history): unused."""
    return _starts(stored, LEGACY_MAGIC)


def unseal(key: bytes, stored: StoredEvent, link: bytes | None) -> StoredEvent | None:
    """The snapshot as the mapper wrote it when its seal verifies under `key` and `link` (the
    chain link now stored at the position of its aggregate's event), else None."""
    if not is_sealed(stored) or link is None:
        return None
    body = bytes(stored.state)[len(MAGIC) :]
    mac, state = body[:_MAC_SIZE], body[_MAC_SIZE:]
    if type(stored.topic) is not str or type(stored.originator_version) is not int:
        return None
    try:
        expected = _mac(
            key, stored.originator_id, stored.originator_version, stored.topic, link, state
        )
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
    that must not open it): then no snapshot is written and none is used. `link_of(id,
    version)` is the chain link stored at the position of that event (None if there is none).
    `ignored` is called with a description of each stored snapshot a load passed over.
    """

    def __init__(
        self,
        mapper: Mapper[UUID],
        recorder: Any,
        key: Callable[[], bytes | None],
        link_of: Callable[[UUID, int], bytes | None],
        ignored: Callable[[str], None],
        skip: Callable[[UUID], bool],
    ) -> None:
        super().__init__(mapper=mapper, recorder=recorder)
        self._key = key
        self._link_of = link_of
        self._ignored = ignored
        self._skip = skip

    def put(
        self, domain_events: Sequence[DomainEventProtocol[UUID]], **kwargs: Any
    ) -> list[Recording[UUID]]:
        key = self._key()
        if key is None:
            return []
        sealed = []
        for event in domain_events:
            # Taken after its events were committed: the link is there unless the log is
            # damaged, and then no snapshot is better than one bound to nothing.
            link = self._link_of(event.originator_id, event.originator_version)
            if link is not None:
                sealed.append(seal(key, self.mapper.to_stored_event(event), link))
        if sealed:
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
        try:
            rows = self.recorder.select_events(
                originator_id=originator_id, gt=gt, lte=lte, desc=desc, limit=limit
            )
        except (TypeError, ValueError) as exc:
            # The library's `bytes(state)` on a NULL state (PostgreSQL's column is nullable):
            # a cache row that cannot authenticate, so fold the events, as for any other.
            self._ignored(
                f"a stored snapshot of {originator_id} does not authenticate "
                f"(unreadable: {type(exc).__name__})"
            )
            return iter(())
        if not rows:
            return iter(())
        key = self._key()
        trusted: list[DomainEventProtocol[UUID]] = []
        for row in rows:
            opened = None
            if key is not None and type(row.originator_version) is int:
                opened = unseal(key, row, self._link_of(originator_id, row.originator_version))
            if opened is None:
                if key is not None:
                    why = (
                        "was sealed by an earlier version (not bound to this ledger)"
                        if is_legacy_sealed(row)
                        else "does not authenticate"
                    )
                    self._ignored(
                        f"the stored snapshot of {row.originator_id} at version "
                        f"{row.originator_version} {why}"
                    )
                # Without a key nothing can be believed: fold the events instead.
                return iter(())
            try:
                trusted.append(self.mapper.to_domain_event(opened))
            except UndecodableData as exc:
                self._ignored(str(exc))
                return iter(())
        return iter(trusted)
