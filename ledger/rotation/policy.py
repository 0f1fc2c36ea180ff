"""The rotation policy alone: statuses, defaults, `policy_status` and `emergency_since`.

Split from ledger/rotation/runs.py (which re-exports all of it) so that a reader of the policy
(`secrets audit replay`'s compliance column) does not import the rotation machinery.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from ledger.records import Incident
from ledger.store.notifications import notifications

if TYPE_CHECKING:
    from ledger.application import SecretsLedger
    from ledger.rotation.catalogue import KeySpec

OK: Final = "ok"
DUE_SOON: Final = "due-soon"
OVERDUE: Final = "overdue"
NEVER_ROTATED: Final = "never-rotated"
EXEMPT: Final = "exempt"
EMERGENCY_PENDING: Final = "emergency-pending"
STATUSES: Final = (EMERGENCY_PENDING, OVERDUE, DUE_SOON, NEVER_ROTATED, OK, EXEMPT)
# Statuses that make a secret non-compliant (rotate-status exits 1).
NON_COMPLIANT: Final = (EMERGENCY_PENDING, OVERDUE)

DEFAULT_ROTATION_DAYS: Final = 90
DEFAULT_WARNING_DAYS: Final = 14


def policy_status(
    kind: str,
    last: datetime | None,
    days: int,
    warning: int,
    as_of: datetime,
    emergency_since: datetime | None = None,
) -> tuple[datetime | None, str]:
    """(due, status) of a value first written at `last`, as of `as_of`: the rotation policy,
    in one place for every screen (rotate-status, reports, dashboard).

    `emergency_since` is when the newest emergency rotation at or before `as_of` started
    (None: none had): a value older than that was not replaced by it."""
    if kind == "none":
        return None, EXEMPT
    if last is None:
        return None, NEVER_ROTATED
    due = last + timedelta(days=days)
    if emergency_since is not None and emergency_since <= as_of and last < emergency_since:
        return due, EMERGENCY_PENDING
    if as_of >= due:
        return due, OVERDUE
    if as_of >= due - timedelta(days=warning):
        return due, DUE_SOON
    return due, OK


def spec_status(
    spec: KeySpec | None,
    last: datetime | None,
    as_of: datetime,
    emergency_since: datetime | None = None,
) -> tuple[str, int, int, datetime | None, str]:
    """(kind, rotation days, warning days, due, status) of a value first written at `last`
    under its catalogue entry `spec` (None: not catalogued, so external with the default
    days): how every screen assesses a secret (`policy_status` with the catalogue's terms)."""
    kind = spec.rotation if spec is not None else "external"
    days = spec.rotation_days if spec is not None else DEFAULT_ROTATION_DAYS
    warning = spec.warning_days if spec is not None else DEFAULT_WARNING_DAYS
    due, status = policy_status(kind, last, days, warning, as_of, emergency_since)
    return kind, days, warning, due, status


def emergency_since(
    ledger: SecretsLedger, as_of: datetime, position: int | None = None
) -> datetime | None:
    """When the newest emergency rotation that started at or before `as_of` started, or None.

    `position` cuts the log there as well (a replay's cut). Reads only the incidents' start
    events (filtered by topic in the store), each checked against the hash chain (exit 6 on
    damage, ledger/integrity/checked_events.py)."""
    from ledger.integrity.checked_events import checked_event

    newest: datetime | None = None
    for notification in notifications(
        ledger.recorder, Incident, "EmergencyRotationStarted", stop=position
    ):
        # Checked against its chain link: an inserted or edited start would mark every
        # secret pending (or, moved in time, none).
        event: Any = checked_event(ledger, notification, "a rotation status")
        when: datetime = event.timestamp
        if when <= as_of and (newest is None or when > newest):
            newest = when
    return newest
