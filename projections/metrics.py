"""Prometheus metrics derived from the ledger's read models (documented in docs/metrics.md).

Every number is a count or a state of the event log, read at scrape time from the views after
catching them up: nothing is counted in process memory, so a restarted exporter, a textfile
writer and a second host serving the same ledger all report the same values.

Import this module only where metrics are wanted: `prometheus_client` costs about 125 ms.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from ledger.errors import LedgerUnavailable
from ledger.names import ENVIRONMENT_PATTERN, NAME_PATTERN, SERVICE_PATTERN
from ledger.operator import OPERATOR_NAME
from ledger.records import Denial, Incident, IntegrityAlarm, ReadReceipt, Rejection
from ledger.rotation.catalogue import Catalogue, load_catalogue
from ledger.rotation.policy import OVERDUE, spec_status
from ledger.secret import Secret
from projections.timefmt import parse_iso
from projections.view_rows import AddressCount, OperatorCount, StatusCount
from projections.views import Views

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ledger.application import SecretsLedger

# Events that are an operator's access to a secret and succeeded. Secret.Registered is left
# out (it always comes with the first VersionAdded, which is the access) and so is
# VersionPruned (retention housekeeping, not an access).
SUCCESS_EVENTS: Final = tuple(
    cls.__qualname__
    for cls in (
        ReadReceipt.SecretRead,  # type: ignore[attr-defined]
        Secret.VersionAdded,
        Secret.Deleted,  # type: ignore[attr-defined]
        Secret.Restored,  # type: ignore[attr-defined]
        Secret.Destroyed,  # type: ignore[attr-defined]
    )
)
# The audit view's `event` column holds an event's qualified class name.
DENIED_EVENT: Final = Denial.AccessDenied.__qualname__  # type: ignore[attr-defined]
REJECTED_EVENT: Final = Rejection.ValidationFailed.__qualname__  # type: ignore[attr-defined]
EMERGENCY_EVENT: Final = Incident.EmergencyRotationStarted.__qualname__  # type: ignore[attr-defined]
INTEGRITY_EVENT: Final = IntegrityAlarm.IntegrityCheckFailed.__qualname__  # type: ignore[attr-defined]

# A denial of a ledger-wide action (login, auth grant, list without --environment) has no
# environment. An empty label would be no label at all in Prometheus, and "*" can never be a
# real environment name (ENVIRONMENT_PATTERN), so it cannot be confused with one.
NO_ENVIRONMENT: Final = "*"
INVALID_LABEL: Final = "<invalid>"
SNAPSHOT_ATTEMPTS: Final = 5

_PATTERNS: Final = tuple(
    re.compile(p, re.ASCII) for p in (ENVIRONMENT_PATTERN, SERVICE_PATTERN, NAME_PATTERN)
)


def rotation_overdue(
    service: str,
    name: str,
    last_rotation: datetime,
    as_of: datetime,
    catalogue: Catalogue | None = None,
) -> bool:
    """Whether a secret last rotated at `last_rotation` is past its key's rotation policy.

    The rule of `ledger.rotation.runs.assess` (status "overdue"), applied to a read-model row: that
    function needs the Secret aggregate, and loading one per secret at every scrape would cost
    far more than the scrape. tests/test_metrics.py checks that both agree.
    """
    spec = (catalogue or load_catalogue(None)).lookup(service, name)
    return spec_status(spec, last_rotation, as_of)[4] == OVERDUE


def _address_labels(environment: str, service: str, name: str) -> list[str]:
    # Every recorded address passed validation before it was recorded; the check is a second
    # line against label values nobody should be able to mint (old or foreign events).
    return [
        value if pattern.fullmatch(value) else INVALID_LABEL
        for value, pattern in zip((environment, service, name), _PATTERNS, strict=True)
    ]


@dataclass(frozen=True)
class _SecretState:
    environment: str
    service: str
    name: str
    last_rotation: datetime


@dataclass(frozen=True)
class Snapshot:
    """Everything one scrape reports, read from one committed state of the views."""

    position: int
    lag: int
    events: int
    access: dict[tuple[str, str, str], int]  # (result, operation, environment) -> count
    denied: list[OperatorCount]  # (operator, operation, environment, count)
    validation_errors: list[AddressCount]
    emergency_rotations: int
    integrity_alarms: int
    statuses: list[StatusCount]
    secrets: list[_SecretState]


def read_snapshot(views: Views) -> Snapshot:
    """Catch the views up and read them, retrying while another process rebuilds them.

    A scrape must never see a half-built view: its counters would look like a reset and
    `increase()` would count every old denial again. The log only grows, so a snapshot whose
    position is behind the head seen before catching up is from a rebuild in progress.
    """
    for _ in range(SNAPSHOT_ATTEMPTS):
        floor = views.ledger.recorder.max_notification_id() or 0
        views.catch_up()
        with views.consistent_read() as position:
            if position < floor:
                continue
            access: dict[tuple[str, str, str], int] = {}
            counted = views.action_counts([*SUCCESS_EVENTS, DENIED_EVENT, REJECTED_EVENT])
            for event, action, environment, count in counted:
                if event == DENIED_EVENT:
                    key = ("denied", action, environment or NO_ENVIRONMENT)
                elif event == REJECTED_EVENT:
                    key = ("error", action, environment or NO_ENVIRONMENT)
                else:
                    key = ("success", action, environment or NO_ENVIRONMENT)
                access[key] = access.get(key, 0) + count
            head = views.ledger.recorder.max_notification_id() or 0
            return Snapshot(
                position=position,
                lag=max(0, head - position),
                events=views.event_count(),
                access=access,
                denied=views.operator_counts(DENIED_EVENT),
                validation_errors=views.address_counts(REJECTED_EVENT),
                emergency_rotations=views.event_count(EMERGENCY_EVENT),
                integrity_alarms=views.event_count(INTEGRITY_EVENT),
                statuses=views.secret_status_counts(),
                secrets=[
                    _SecretState(r.environment, r.service, r.name, parse_iso(r.last_rotation))
                    for r in views.secrets()
                    if r.last_rotation
                ],
            )
    raise LedgerUnavailable("the read model kept changing under the scrape (rebuild running?)")


def families(snapshot: Snapshot, as_of: datetime, catalogue: Catalogue) -> list[Metric]:
    access = CounterMetricFamily(
        "hyperbun_secret_access",
        "Access attempts recorded by the ledger: success, denied (HBSE-006), "
        "error (validation rejection, HBSE-007).",
        labels=["result", "operation", "environment"],
    )
    for (result, operation, environment), count in sorted(snapshot.access.items()):
        access.add_metric([result, operation, environment], count)

    # The denials again, by operator: the alert names who was refused. Bounded: a denial is
    # recorded under an authenticated operator's name or as "anonymous", never under a name a
    # caller merely claimed, so there are at most (operators + 1) x actions x environments.
    denied = CounterMetricFamily(
        "hyperbun_secret_access_denied",
        "Denied access attempts (HBSE-006) by operator (anonymous: no valid session or token); "
        'the same events as hyperbun_secret_access_total{result="denied"}.',
        labels=["operator", "operation", "environment"],
    )
    by_operator: dict[tuple[str, str, str], int] = {}
    for operator, operation, where, n in snapshot.denied:
        who = operator if OPERATOR_NAME.fullmatch(operator) else INVALID_LABEL
        denial = (who, operation, where or NO_ENVIRONMENT)
        by_operator[denial] = by_operator.get(denial, 0) + n
    for denial, n in sorted(by_operator.items()):
        denied.add_metric(list(denial), n)

    rotation = GaugeMetricFamily(
        "hyperbun_secret_rotation_timestamp",
        "Unix time the current value of an active secret was first written "
        "(a rollback keeps the restored value's time).",
        labels=["environment", "service", "name"],
    )
    age = GaugeMetricFamily(
        "hyperbun_secret_age_seconds",
        "Seconds since the current value of an active secret was first written.",
        labels=["environment", "service", "name"],
    )
    overdue = GaugeMetricFamily(
        "hyperbun_secret_rotation_overdue",
        "1 when an active secret is past its key's rotation_days (default 90), else 0.",
        labels=["environment", "service", "name"],
    )
    for s in snapshot.secrets:
        labels = [s.environment, s.service, s.name]
        rotation.add_metric(labels, s.last_rotation.timestamp())
        age.add_metric(labels, max(0.0, (as_of - s.last_rotation).total_seconds()))
        late = rotation_overdue(s.service, s.name, s.last_rotation, as_of, catalogue)
        overdue.add_metric(labels, 1.0 if late else 0.0)

    rejected = CounterMetricFamily(
        "hyperbun_secret_validation_errors",
        "Values or names rejected by validation (HBSE-007), per secret address.",
        labels=["environment", "service", "name"],
    )
    merged: dict[tuple[str, ...], int] = {}
    for environment, service, name, count in snapshot.validation_errors:
        key = tuple(_address_labels(environment, service, name))
        merged[key] = merged.get(key, 0) + count
    for key, count in sorted(merged.items()):
        rejected.add_metric(list(key), count)

    emergency = CounterMetricFamily(
        "hyperbun_emergency_rotation",
        "Emergency rotations started (Incident.EmergencyRotationStarted, HBSE-008).",
        value=snapshot.emergency_rotations,
    )

    statuses = GaugeMetricFamily(
        "hyperbun_secrets",
        "Secrets per environment and state (active, deleted, destroyed).",
        labels=["environment", "status"],
    )
    by_status: dict[tuple[str, str], int] = {}
    for environment, status, count in snapshot.statuses:
        for each in ("active", "deleted", "destroyed"):
            by_status.setdefault((environment, each), 0)
        by_status[(environment, status)] = count
    for (environment, status), count in sorted(by_status.items()):
        statuses.add_metric([environment, status], count)

    events = CounterMetricFamily(
        "hyperbun_ledger_events", "Events in the ledger's log.", value=snapshot.events
    )
    integrity = GaugeMetricFamily(
        "hyperbun_ledger_integrity_ok",
        "0 once `secrets audit verify` has recorded an integrity failure (HBSE-013), else 1.",
        value=0 if snapshot.integrity_alarms else 1,
    )
    lag = GaugeMetricFamily(
        "hyperbun_projection_lag_events",
        "Events in the log not yet applied to the read model when the scrape was answered.",
        value=snapshot.lag,
    )
    return [
        access,
        denied,
        rotation,
        rejected,
        emergency,
        age,
        overdue,
        statuses,
        events,
        integrity,
        lag,
    ]


class LedgerCollector(Collector):
    """Reads the ledger's views at every collect(); registered on its own registry."""

    def __init__(
        self,
        ledger: SecretsLedger,
        clock: Callable[[], datetime] | None = None,
        catalogue: Catalogue | None = None,
    ) -> None:
        self._ledger = ledger
        self._clock = clock or (lambda: datetime.now(UTC))
        self._catalogue = catalogue or load_catalogue(None)
        # The HTTP server answers each scrape on its own thread: one catch-up at a time is
        # enough, and a sqlite3 connection must stay on the thread that opened it.
        self._lock = threading.Lock()

    def describe(self) -> list[Metric]:
        # Empty: the registry would otherwise call collect() (a ledger read) at registration.
        return []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            views = Views(self._ledger)
            try:
                snapshot = read_snapshot(views)
            finally:
                views.close()
        yield from families(snapshot, self._clock(), self._catalogue)


def ledger_registry(
    ledger: SecretsLedger,
    clock: Callable[[], datetime] | None = None,
    catalogue: Catalogue | None = None,
) -> CollectorRegistry:
    """A registry holding only the ledger's metrics (no process_* or python_* series)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(ledger, clock, catalogue))
    return registry
