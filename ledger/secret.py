"""The `Secret` aggregate: the version history of one (environment, service, name).

It holds metadata only. Values live in the vault; the aggregate knows each version's keyed
fingerprint, why it was written, by whom, and whether its value is still retained.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from eventsourcing.domain import event

from ledger.address import SecretAddress, secret_id
from ledger.errors import NotFound, ValidationFailed, VersionConflict
from ledger.stamping import LedgerAggregate

Reason = Literal["manual", "rotation", "emergency", "rollback", "provision"]
REASONS: tuple[Reason, ...] = ("manual", "rotation", "emergency", "rollback", "provision")


@dataclass(frozen=True)
class Version:
    number: int
    fingerprint: str
    reason: str
    timestamp: datetime
    operator: str
    rolled_back_from: int | None
    host: str
    retained: bool = True

    @property
    def short_fingerprint(self) -> str:
        return self.fingerprint[:12]


class VersionHistory:
    """Versions by number. Not a dict: JSON would turn int keys into strings in snapshots."""

    def __init__(self, versions: list[Version] | None = None) -> None:
        self._by_number: dict[int, Version] = {v.number: v for v in versions or []}

    def __getitem__(self, number: int) -> Version:
        return self._by_number[number]

    def __setitem__(self, number: int, version: Version) -> None:
        self._by_number[number] = version

    def __contains__(self, number: object) -> bool:
        return number in self._by_number

    def __iter__(self) -> Iterator[int]:
        return iter(self._by_number)

    def __len__(self) -> int:
        return len(self._by_number)

    def __eq__(self, other: object) -> bool:
        # A value object: a history rebuilt from a snapshot must equal the replayed one.
        if not isinstance(other, VersionHistory):
            return NotImplemented
        return self._by_number == other._by_number

    __hash__ = None  # type: ignore[assignment]

    def get(self, number: int) -> Version | None:
        return self._by_number.get(number)

    def values(self) -> list[Version]:
        return [self._by_number[n] for n in sorted(self._by_number)]

    def items(self) -> list[tuple[int, Version]]:
        return [(n, self._by_number[n]) for n in sorted(self._by_number)]


class Secret(LedgerAggregate):
    @staticmethod
    def create_id(environment: str, service: str, name: str) -> UUID:
        return secret_id(environment, service, name)

    @event("Registered")
    def __init__(self, environment: str, service: str, name: str) -> None:
        self.environment = environment
        self.service = service
        self.name = name
        self.versions = VersionHistory()
        self.deleted = False
        self.destroyed = False

    @property
    def address(self) -> SecretAddress:
        return SecretAddress(self.environment, self.service, self.name)

    @property
    def current_version(self) -> int:
        return max(self.versions, default=0)

    @property
    def current(self) -> Version | None:
        return self.versions.get(self.current_version)

    @property
    def retained_versions(self) -> list[int]:
        return sorted(n for n, v in self.versions.items() if v.retained)

    # -- guards ---------------------------------------------------------------------------

    def readable_version(self, number: int | None = None) -> Version:
        """A version that exists, is not deleted and still has its value."""
        if self.destroyed:
            raise NotFound(f"{self.address} was destroyed; its values are gone for good")
        if self.deleted:
            raise NotFound(f"{self.address} is deleted (restore it first)")
        if number is None:
            number = self.current_version
        found = self.versions.get(number)
        if found is None:
            raise NotFound(f"{self.address} has no version {number}")
        if not found.retained:
            why = "destroyed" if self.destroyed else "pruned by the retention policy"
            raise NotFound(f"{self.address} v{number} has no value any more ({why})")
        return found

    def expect_version(self, expected: int | None) -> None:
        """Check-and-set: refuse unless the current version is `expected` (0: no version yet).

        Called on the secret as each write attempt loads it, so a retry after another writer's
        save checks again and fails rather than writing over a version its caller never saw."""
        if expected is not None and expected != self.current_version:
            raise VersionConflict(
                f"{self.address} is at v{self.current_version}, not v{expected} (--if-version): "
                "someone else changed it; nothing was written"
            )

    # -- commands -------------------------------------------------------------------------

    def add_version(
        self,
        fingerprint: str,
        reason: str,
        host: str,
        rolled_back_from: int | None = None,
        incident_id: str | None = None,
    ) -> int:
        if reason not in REASONS:
            raise ValidationFailed("reason", f"unknown reason {reason!r}")
        number = self.current_version + 1
        self._version_added(number, fingerprint, reason, host, rolled_back_from, incident_id)
        return number

    class VersionAdded(LedgerAggregate.Event):
        # An explicit class (not @event): applying it needs the event's own timestamp and
        # operator, which a decorated method body cannot see.
        version: int
        fingerprint: str
        reason: str
        host: str
        rolled_back_from: int | None
        incident_id: str | None

        def apply(self, aggregate: Any) -> None:
            assert isinstance(aggregate, Secret)
            aggregate.versions[self.version] = Version(
                number=self.version,
                fingerprint=self.fingerprint,
                reason=self.reason,
                timestamp=self.timestamp,
                operator=self.operator,
                rolled_back_from=self.rolled_back_from,
                host=self.host,
            )
            aggregate.deleted = False
            aggregate.destroyed = False

    def _version_added(
        self,
        version: int,
        fingerprint: str,
        reason: str,
        host: str,
        rolled_back_from: int | None,
        incident_id: str | None,
    ) -> None:
        self.trigger_event(
            self.VersionAdded,
            version=version,
            fingerprint=fingerprint,
            reason=reason,
            host=host,
            rolled_back_from=rolled_back_from,
            incident_id=incident_id,
        )

    def prune_beyond(self, keep: int) -> list[Version]:
        """Drop the values of all but the newest `keep` retained versions."""
        retained = self.retained_versions
        doomed = retained[: max(0, len(retained) - keep)]
        pruned = [self.versions[n] for n in doomed]
        for n in doomed:
            self._version_pruned(n)
        return pruned

    @event("VersionPruned")
    def _version_pruned(self, version: int) -> None:
        self._forget(version)

    def delete(self) -> None:
        if self.deleted:
            raise NotFound(f"{self.address} is already deleted")
        self._deleted()

    @event("Deleted")
    def _deleted(self) -> None:
        self.deleted = True

    def restore(self) -> None:
        if not self.deleted:
            raise ValidationFailed("not-deleted", f"{self.address} is not deleted")
        if self.destroyed:
            raise NotFound(f"{self.address} was destroyed; its values are gone for good")
        self._restored()

    @event("Restored")
    def _restored(self) -> None:
        self.deleted = False

    def destroy(self) -> list[Version]:
        doomed = [self.versions[n] for n in self.retained_versions]
        self._destroyed([v.number for v in doomed])
        return doomed

    @event("Destroyed")
    def _destroyed(self, versions: list[int]) -> None:
        for n in versions:
            self._forget(n)
        self.deleted = True
        self.destroyed = True

    def _forget(self, number: int) -> None:
        old = self.versions[number]
        self.versions[number] = Version(
            number=old.number,
            fingerprint=old.fingerprint,
            reason=old.reason,
            timestamp=old.timestamp,
            operator=old.operator,
            rolled_back_from=old.rolled_back_from,
            host=old.host,
            retained=False,
        )

    def rotated_at(self, number: int) -> datetime:
        """When the value of version `number` was first introduced.

        A rollback brings back an old value, so it must not make the secret look freshly
        rotated: its age runs from the version it restored. A version whose fingerprint is its
        predecessor's (a `set` of the value already in use) brought no new value either: its
        age runs from the predecessor's.
        """
        version = self.versions[number]
        seen = {number}
        while True:
            source = self.value_source(version)
            if source is None or source in seen or source not in self.versions:
                return version.timestamp
            seen.add(source)
            version = self.versions[source]

    def value_source(self, version: Version) -> int | None:
        """The earlier version whose value `version` carries on, or None if it brought a new
        one (`value_source`, the rule every projection applies too)."""
        previous = self.versions.get(version.number - 1)
        return value_source(
            version.rolled_back_from,
            version.fingerprint,
            previous.number if previous is not None else 0,
            previous.fingerprint if previous is not None else None,
        )

    @property
    def last_rotation(self) -> datetime | None:
        """A manual set of a new value counts as a rotation for compliance (as AWS does); a
        rollback, or a set of the value already in use, does not."""
        if not self.versions:
            return None
        return self.rotated_at(self.current_version)


def value_source(
    rolled_back_from: int | None,
    fingerprint: str,
    previous: int,
    previous_fingerprint: str | None,
) -> int | None:
    """The earlier version whose value a new version carries on, or None if it brings a new
    value: a rollback carries on the version it restores; a version with the fingerprint of
    its predecessor (`previous`, 0 for none) carries on the predecessor's value (a `set` of
    the value already in use). A carried-on value keeps its age: it was not rotated."""
    if rolled_back_from is not None:
        return rolled_back_from
    if previous and previous_fingerprint == fingerprint:
        return previous
    return None
