"""How aggregate state that is not plain JSON is written into snapshots."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from eventsourcing.persistence import Transcoding

from ledger.operator import Session
from ledger.secret import Version, VersionHistory


class VersionAsDict(Transcoding):
    type = Version
    name = "secret_version"

    def encode(self, obj: Version) -> dict[str, Any]:
        return asdict(obj)

    def decode(self, data: dict[str, Any]) -> Version:
        return Version(**data)


class VersionHistoryAsList(Transcoding):
    type = VersionHistory
    name = "secret_version_history"

    def encode(self, obj: VersionHistory) -> list[Version]:
        return obj.values()

    def decode(self, data: list[Version]) -> VersionHistory:
        return VersionHistory(data)


class SessionAsDict(Transcoding):
    type = Session
    name = "operator_session"

    def encode(self, obj: Session) -> dict[str, Any]:
        return asdict(obj)

    def decode(self, data: dict[str, Any]) -> Session:
        return Session(**data)


ALL: tuple[Transcoding, ...] = (VersionAsDict(), VersionHistoryAsList(), SessionAsDict())
