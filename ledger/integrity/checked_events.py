"""Single events found through the topic index, checked against the hash chain before use.

`notifications` (ledger/store/notifications.py) hands out rows as the store holds them. A reader
that decides on one of those events (whether an emergency rotation is pending, whether the
rotation schedule is installed) must not believe an edited or inserted row: each event is
read again with its chain link (`LinkedRecorder.select_linked`, the read `load_secret` folds
through), checked (`authority.check_row`) and decoded from the checked bytes. Damage is
`DamagedHistory` naming the position, raised inside the ledger's `uow.failing_closed`, so it
ends the command with exit 6 and an integrity alarm recorded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import Notification, StoredEvent

from ledger.access.authority import DamagedHistory, LinkedRecorder, check_row
from ledger.store.notifications import originator_of

if TYPE_CHECKING:
    from ledger.application import SecretsLedger


def checked_event(ledger: SecretsLedger, notification: Notification, action: str) -> Any:
    """The domain event at `notification`'s position, decoded from bytes that verified
    against their chain link; exit 6 (an alarm recorded) when they do not."""
    with ledger.uow.failing_closed(action):
        return _checked(ledger, notification)


def _checked(ledger: SecretsLedger, notification: Notification) -> Any:
    recorder = ledger.recorder
    if not isinstance(recorder, LinkedRecorder):
        # A store with no chain (none of this project's): nothing to check against.
        return ledger.mapper.to_domain_event(notification)
    position = notification.id
    oid = originator_of(notification)
    version = notification.originator_version
    if not isinstance(version, int) or isinstance(version, bool):
        raise DamagedHistory(position, "edited", "an event's stored values are malformed")
    rows = recorder.select_linked(oid, version - 1, version)
    row = next((r for r in rows if r[0] == position), None)
    if row is None:
        # The index named an event that its aggregate's history does not hold there.
        raise DamagedHistory(position, "edited", "an event's stored values are malformed")
    problem = check_row(row)
    if problem is not None:
        raise problem
    _, _, stored_version, topic, state, _, _ = row
    try:
        return ledger.mapper.to_domain_event(StoredEvent(oid, stored_version, topic, bytes(state)))
    except Exception as exc:
        # Any failure to decode is damage at this position; the message is not repeated
        # (it may quote stored bytes).
        raise DamagedHistory(
            position, "undecodable", f"an event cannot be decoded ({type(exc).__name__})"
        ) from None
