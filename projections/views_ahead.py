"""Whether the views cache claims more than the log holds.

The tracked position says how far the views applied the log. A writer of views.sqlite can set
it anywhere, and a ledger restored from an older backup next to a newer views file leaves it
past the log's head: the catch-up then found nothing to apply, and `list` and `audit log`
stayed stale until `projections rebuild`. So before every catch-up the cache's claim is
checked against the log, cheaply: the tracked position must not be past the log's head, and
the audit row at that position must be what the log's event there makes
(projections/audit_check.py: one event read and decoded). A cache that fails either is
damaged: `catch_up` rebuilds it with a warning, `doctor` reports it.

What this cannot see: a restored log that holds, at the tracked position, the very event the
views applied there, but differs before it; `audit log` checks the rows it shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from ledger.application import SecretsLedger
    from projections.views import Views


def ahead(views: Views) -> str | None:
    """Why the views claim what the log does not hold, or None."""
    # The position and its entry from one state of the views: a rebuild committing in
    # another process between the two reads must not look like damage.
    with views.consistent_read() as position:
        rows = views.audit(after_position=position - 1, limit=1) if position > 0 else []
    if position <= 0:
        return None
    head = views.ledger.recorder.max_notification_id() or 0  # read after: it only grows
    if position > head:
        return (
            f"it reached position {position} but the log ends at {head}: the log's tail may "
            "have been cut (run `secrets audit verify`), or the cache is another copy's"
        )
    if not rows or rows[0].position != position:
        return f"it holds no audit entry at its own position {position}"
    from projections.audit_check import check

    if check(views, rows).unfaithful:
        return f"its entry at position {position} is not what the ledger recorded there"
    return None


def of_file(ledger: SecretsLedger, path: Path) -> str | None:
    """`ahead` of the views file at `path` (absent: None), for `secrets doctor`."""
    if not path.exists():
        return None
    from projections.views import Views

    views = Views(ledger, path)
    try:
        return ahead(views)
    finally:
        views.close()
