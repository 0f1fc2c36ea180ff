"""The only classes that stored bytes may name.

Storage is hostile: whoever can write the SQLite file or a PostgreSQL table writes the topic
column of an event row, the `originator_topic` inside a created event's state and the `topic`
inside a snapshot (values inside a state are decoded by fixed transcodings). The library's
`resolve_topic` imports whatever module a topic names and returns whatever attribute it
names. Here a topic is data: it is looked up in these fixed tables first, and only a listed
one is resolved (it names a module of this package, which decoding imports anyway).
Anything else is `UnknownTopic`, an integrity failure.

tests/unit/test_topics.py checks the tables against the classes the aggregates define, so a new
event class that is not listed fails a test, not a user's command.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.utils import resolve_topic

from ledger.errors import IntegrityFailure

# Aggregate topic -> the names of the events it records (nested classes of the aggregate).
_EVENTS: dict[str, tuple[str, ...]] = {
    "ledger.checkpoint:Checkpoint": ("CheckpointSigned",),
    "ledger.operator:Operator": (
        "Registered",
        "Revoked",
        "RoleGranted",
        "SessionClosed",
        "SessionOpened",
        "TokenIssued",
    ),
    "ledger.records:Denial": ("AccessDenied",),
    "ledger.records:GrantRejection": ("GrantRefused",),
    "ledger.records:Incident": ("EmergencyRotationCompleted", "EmergencyRotationStarted"),
    "ledger.records:IntegrityAlarm": ("IntegrityCheckFailed",),
    "ledger.records:ReadReceipt": ("SecretRead",),
    "ledger.records:Rejection": ("ValidationFailed",),
    "ledger.rotation_records:RotationRun": ("Abandoned", "BatchEnded", "Started"),
    "ledger.rotation_records:ScheduleChange": ("ScheduleChanged",),
    "ledger.secret:Secret": (
        "Deleted",
        "Destroyed",
        "Registered",
        "Restored",
        "VersionAdded",
        "VersionPruned",
    ),
    "ledger.settings:LedgerSettings": (
        "FingerprintKeyExported",
        "FingerprintKeyImported",
        "Initialized",
        "RetentionChanged",
        "SeniorEngineersChanged",
        "VaultChosen",
    ),
}

AGGREGATE_TOPICS = frozenset(_EVENTS)
# Event topic -> the topic of the aggregate that records it.
EVENT_OWNERS: dict[str, str] = {
    f"{aggregate}.{name}": aggregate for aggregate, names in _EVENTS.items() for name in names
}
SNAPSHOT_TOPIC = "ledger.stamping:LedgerSnapshot"
# The aggregates that take snapshots (SecretsLedger.snapshotting_intervals): a snapshot naming
# any other aggregate was not written by this code.
SNAPSHOTTED_AGGREGATES = frozenset({"ledger.secret:Secret"})
STORED_TOPICS = frozenset(EVENT_OWNERS) | {SNAPSHOT_TOPIC}


class UnknownTopic(IntegrityFailure):
    """Stored bytes name a class that is not one of this project's stored types."""


def _listed(topic: object, allowed: frozenset[str], what: str) -> Any:
    if type(topic) is not str or topic not in allowed:
        shown = repr(topic)[:80] if isinstance(topic, str) else type(topic).__name__
        raise UnknownTopic(f"stored data names an unknown {what} {shown}")
    # Listed: a class of this package, so resolving it imports nothing chosen by the data.
    return resolve_topic(topic)


def stored_class(topic: object) -> type[Any]:
    """The event or snapshot class a stored row's topic names, or UnknownTopic."""
    found: type[Any] = _listed(topic, STORED_TOPICS, "event type")
    return found


def aggregate_class(topic: object) -> type[Any]:
    """The aggregate class a stored state names, or UnknownTopic."""
    found: type[Any] = _listed(topic, AGGREGATE_TOPICS, "aggregate type")
    return found
