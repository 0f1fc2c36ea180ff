"""Unit tests of the Secret and Operator aggregates: no store, no keychain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ledger import context
from ledger.errors import NotFound, ValidationFailed
from ledger.operator import Operator
from ledger.secret import Secret

FP = [f"{n:064x}" for n in range(1, 40)]


def test_versions_are_consecutive_and_stamped_with_operator_and_clock() -> None:
    t0 = datetime(2025, 10, 1, 8, tzinfo=UTC)
    with context.acting_as("alice"), context.frozen_clock(lambda: t0):
        secret = Secret("production", "nexus", "mcp.bun.apiKey")
        assert secret.add_version(FP[0], "manual", "host-a") == 1
        assert secret.add_version(FP[1], "rotation", "host-a") == 2
    v2 = secret.versions[2]
    assert (v2.operator, v2.timestamp, v2.reason) == ("alice", t0, "rotation")
    assert secret.last_rotation == t0
    events = secret.collect_events()
    assert {e.operator for e in events} == {"alice"}  # type: ignore[attr-defined]
    assert len({e.correlation_id for e in events}) == 1  # type: ignore[attr-defined]


def test_retention_prunes_oldest_values_but_keeps_history() -> None:
    secret = Secret("default", "github", "github.token")
    for n in range(12):
        secret.add_version(FP[n], "manual", "h")
        secret.prune_beyond(10)
    assert secret.retained_versions == list(range(3, 13))
    assert len(secret.versions) == 12
    with pytest.raises(NotFound, match="pruned"):
        secret.readable_version(2)
    assert secret.readable_version(3).fingerprint == FP[2]


def test_delete_restore_destroy_guards() -> None:
    secret = Secret("default", "telegram", "telegram.bot.token")
    secret.add_version(FP[0], "manual", "h")
    secret.delete()
    with pytest.raises(NotFound, match="deleted"):
        secret.readable_version()
    with pytest.raises(NotFound):
        secret.delete()
    secret.restore()
    assert secret.readable_version().number == 1
    with pytest.raises(ValidationFailed):
        secret.restore()
    doomed = secret.destroy()
    assert [v.number for v in doomed] == [1]
    with pytest.raises(NotFound, match="destroyed"):
        secret.restore()
    # A new value revives the address and continues the numbering.
    assert secret.add_version(FP[1], "manual", "h") == 2
    assert not secret.deleted


def test_unknown_reason_is_refused() -> None:
    secret = Secret("default", "s", "n")
    with pytest.raises(ValidationFailed):
        secret.add_version(FP[0], "because", "h")


def test_operator_sessions_expire_and_close() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    operator = Operator("bob", "analyst")
    with context.frozen_clock(lambda: t0):
        operator.open_session("s1", "d1", t0 + timedelta(hours=8), "h")
    assert operator.valid_session("s1", "d1", t0 + timedelta(hours=1)) is not None
    assert operator.valid_session("s1", "wrong", t0) is None
    assert operator.valid_session("s1", "d1", t0 + timedelta(hours=8)) is None
    operator.revoke()
    assert operator.role is None and not operator.sessions


def test_a_rollback_does_not_count_as_a_rotation() -> None:
    t1 = datetime(2025, 1, 1, tzinfo=UTC)
    t2 = datetime(2025, 3, 1, tzinfo=UTC)
    t3 = datetime(2025, 5, 1, tzinfo=UTC)
    secret = Secret("default", "nexus", "k")
    with context.frozen_clock(lambda: t1):
        secret.add_version(FP[0], "manual", "h")
    with context.frozen_clock(lambda: t2):
        secret.add_version(FP[1], "rotation", "h")
    with context.frozen_clock(lambda: t3):
        secret.add_version(FP[0], "rollback", "h", rolled_back_from=1)
    assert secret.last_rotation == t1
    with context.frozen_clock(lambda: t3):
        secret.add_version(FP[1], "rollback", "h", rolled_back_from=3)
    assert secret.last_rotation == t1
