"""One-event aggregates for high-volume facts: reads, denials, validation failures, incidents.

They are kept off the `Secret` aggregate so that reading a secret never conflicts with
writing it: each record has a fresh random id and is never changed after it is created.
"""

from __future__ import annotations

from eventsourcing.domain import event

from ledger.stamping import LedgerAggregate


class ReadReceipt(LedgerAggregate):
    """A value read. `purpose` names the consumer run that read it (`run <id>`, `export
    <id>`, `inject <id>`), shared by every read of that run; None for `get` and for reads
    recorded before the field existed (their stored states lack it: the default stands in)."""

    @event("SecretRead")
    def __init__(
        self, environment: str, service: str, name: str, version: int, purpose: str | None = None
    ) -> None:
        self.address = (environment, service, name)
        self.read_version = version
        self.purpose = purpose


class Denial(LedgerAggregate):
    """An access attempt that policy refused (audit code HBSE-006)."""

    @event("AccessDenied")
    def __init__(
        self,
        action: str,
        reason: str,
        environment: str | None,
        service: str | None,
        name: str | None,
    ) -> None:
        self.action = action
        self.reason = reason
        self.target = (environment, service, name)


class Rejection(LedgerAggregate):
    """A value or name that failed validation. Holds the rule broken, never the value."""

    @event("ValidationFailed")
    def __init__(self, environment: str, service: str, name: str, rule: str) -> None:
        self.target = (environment, service, name)
        self.rule = rule


class GrantRejection(LedgerAggregate):
    """An `auth grant` whose operator name or role broke a rule (audit code HBSE-007).

    The name and role are kept as typed but escaped (`unicode_escape`, at most 80 characters):
    a control character in an audit trail must not reach an auditor's terminal.
    """

    @event("GrantRefused")
    def __init__(self, name: str, role: str, rule: str) -> None:
        # `name`, not `operator`: every event already carries the acting operator.
        self.name = name
        self.role = role
        self.rule = rule


def escaped(text: str, limit: int = 80) -> str:
    """`text` with every non-printable character escaped, cut to `limit` characters."""
    return text.encode("unicode_escape").decode("ascii")[:limit]


class Incident(LedgerAggregate):
    """An emergency rotation: everything rotated under one incident id."""

    @event("EmergencyRotationStarted")
    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.summary: dict[str, list[str]] | None = None

    @event("EmergencyRotationCompleted")
    def complete(self, rotated: list[str], needs_value: list[str], failed: list[str]) -> None:
        self.summary = {"rotated": rotated, "needs_value": needs_value, "failed": failed}


class IntegrityAlarm(LedgerAggregate):
    """`audit verify` found the history altered (HBSE-013)."""

    @event("IntegrityCheckFailed")
    def __init__(self, position: int, fault: str, detail: str) -> None:
        self.position = position
        self.fault = fault
        self.detail = detail
