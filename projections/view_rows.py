"""The rows the views' queries give, with names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple


@dataclass(frozen=True)
class SecretRow:
    environment: str
    service: str
    name: str
    current_version: int
    fingerprint: str
    last_change: str
    operator: str
    reason: str
    last_rotation: str
    deleted: bool
    destroyed: bool
    retained: int
    # The newest value read of the secret (`get`), by whom and of which version; None if
    # never read.
    last_read: str | None = None
    last_reader: str | None = None
    last_read_version: int | None = None

    def last_read_json(self) -> dict[str, Any] | None:
        if self.last_read is None:
            return None
        return {
            "timestamp": self.last_read,
            "operator": self.last_reader,
            "version": self.last_read_version,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "service": self.service,
            "name": self.name,
            "current_version": self.current_version,
            "fingerprint": self.fingerprint[:12],
            "last_change": self.last_change,
            "operator": self.operator,
            "reason": self.reason,
            "last_rotation": self.last_rotation,
            "deleted": self.deleted,
            "destroyed": self.destroyed,
            "last_read": self.last_read_json(),
            "value": "********",
        }


@dataclass(frozen=True)
class AuditRow:
    position: int
    timestamp: str
    code: str
    event: str
    operator: str
    action: str
    environment: str | None
    service: str | None
    name: str | None
    outcome: str
    correlation_id: str
    detail: str

    @property
    def target(self) -> str:
        if self.service is None:
            return ""
        return f"{self.environment}/{self.service}/{self.name}"

    def as_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "timestamp": self.timestamp,
            "code": self.code,
            "event": self.event,
            "operator": self.operator,
            "action": self.action,
            "environment": self.environment,
            "service": self.service,
            "name": self.name,
            "outcome": self.outcome,
            "correlation_id": self.correlation_id,
            "detail": self.detail,
        }


class OperatorRow(NamedTuple):
    name: str
    role: str | None
    updated_at: str


class ActionCount(NamedTuple):
    """How many events of one kind (`event`) and action, per environment."""

    event: str
    action: str
    environment: str | None
    total: int


class OperatorCount(NamedTuple):
    operator: str
    action: str
    environment: str | None
    total: int


class AddressCount(NamedTuple):
    environment: str
    service: str
    name: str
    total: int


class StatusCount(NamedTuple):
    environment: str
    status: str  # active, deleted or destroyed
    total: int
