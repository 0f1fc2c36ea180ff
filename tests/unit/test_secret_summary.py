"""The one fold of a secret's summary (projections/secret_summary.py) knows every event class
a secret records, and replay's fold every event of the aggregates it reads."""

from __future__ import annotations

from typing import Any

from ledger import topics
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
