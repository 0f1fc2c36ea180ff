"""The one fold of a secret's summary (projections/secret_summary.py) knows every event class
a secret records, and replay's fold every event of the aggregates it reads."""

from __future__ import annotations

from typing import Any

from ledger.codec import topics
from projections import replay, secret_summary


def _classes(aggregate: str) -> set[type[Any]]:
    return {
        topics.stored_class(t) for t, owner in topics.EVENT_OWNERS.items() if owner == aggregate
    }


def test_every_secret_event_class_has_a_handler() -> None:
    # A new Secret event without a handler would be a silent gap in replay, compliance and
    # the views: it fails here instead.
    assert set(secret_summary.EVENTS) == _classes("ledger.secret:Secret")


def test_replay_folds_exactly_the_events_of_secrets_operators_and_settings() -> None:
    folded = (
        _classes("ledger.secret:Secret")
        | _classes("ledger.operator:Operator")
        | _classes("ledger.settings:LedgerSettings")
    )
    assert folded == replay.FOLDED
    for topic in topics.EVENT_OWNERS:
        assert replay._is_folded(topic) == (topics.stored_class(topic) in folded), topic


def test_event_names_kept_as_data_name_stored_event_classes() -> None:
    """The audit view stores an event's qualified class name (`event` column): the code
    catalogue and the metrics look events up by it. A renamed class fails here."""
    from projections import metrics
    from projections.audit_codes import EVENT_CODES

    names = {topics.stored_class(t).__qualname__ for t in topics.EVENT_OWNERS}
    assert set(EVENT_CODES) == names - {"Secret.VersionAdded"}  # its code is its reason's
    used = {*metrics.SUCCESS_EVENTS, metrics.DENIED_EVENT, metrics.REJECTED_EVENT}
    assert used | {metrics.EMERGENCY_EVENT, metrics.INTEGRITY_EVENT} <= names


def test_audit_rows_name_the_audit_view_columns_in_order() -> None:
    """The catch-up builds audit rows as plain tuples (a NamedTuple per row would cost a few
    percent of a rebuild) in the audit view's column order; `AuditRow` names them."""
    import dataclasses
    import sqlite3

    from projections.view_rows import AuditRow
    from projections.views_schema import SCHEMA

    db = sqlite3.connect(":memory:")
    db.executescript(SCHEMA)
    columns = [r[1] for r in db.execute("PRAGMA table_info(audit_view)")]
    assert [f.name for f in dataclasses.fields(AuditRow)] == columns
