"""`secrets dashboard` through the real CLI: what each caller sees, that looking records
nothing and never opens the keychain, real rotation figures, json, and --watch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ledger.rotation.catalogue import load_catalogue
from ledger.rotation.runs import DUE_SOON, EMERGENCY_PENDING, EXEMPT, NEVER_ROTATED, OK, OVERDUE
from projections.dashboard import rotation_status
from projections.timefmt import iso
from projections.views import SecretRow

# -- the rotation rules, at chosen instants ----------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def row(service: str, name: str, last: datetime | None, deleted: bool = False) -> SecretRow:
    return SecretRow(
        "production",
        service,
        name,
        1,
        "f" * 64,
        iso(last) if last else "",
        "alice",
        "manual",
        iso(last) if last else "",
        deleted,
        False,
        1,
    )


@pytest.mark.parametrize(
    ("days_later", "status"),
    [(0, OK), (75, OK), (76, DUE_SOON), (89.9, DUE_SOON), (90, OVERDUE), (400, OVERDUE)],
)
def test_rotation_status_follows_the_90_14_policy(days_later: float, status: str) -> None:
    rows = [row("nexus", "mcp.bun.apiKey", T0)]
    report = rotation_status(rows, load_catalogue(None), T0 + timedelta(days=days_later))
    assert [s.status for s in report.secrets] == [status]
    assert report.next_due == T0 + timedelta(days=90)
    assert report.last_rotation == T0
    assert report.compliant is (status != OVERDUE)


def test_rotation_status_lines() -> None:
    catalogue = load_catalogue(None)
    rows = [
        row("nexus", "mcp.bun.apiKey", T0),
        row("github", "github.token", T0 + timedelta(days=10)),
        row("telegram", "telegram.chat.id", T0 - timedelta(days=900)),  # identifier: exempt
        row("custom", "thing", T0 - timedelta(days=1)),  # uncatalogued: 90/14
        row("nexus", "mcp.openai.apiKey", T0 - timedelta(days=500), deleted=True),
        row("nexus", "mcp.anthropic.apiKey", None),
    ]
    report = rotation_status(rows, catalogue, T0 + timedelta(days=85))
    by_name = {s.name: s.status for s in report.secrets}
    assert by_name == {
        "mcp.bun.apiKey": DUE_SOON,
        "github.token": OK,
        "telegram.chat.id": EXEMPT,
        "thing": DUE_SOON,
        "mcp.anthropic.apiKey": NEVER_ROTATED,
    }
    assert report.status_line == "Compliant, 2 of 4 due within the warning period"
    assert report.last_rotation == T0 + timedelta(days=10)  # newest, exempt keys included
    assert [s.name for s in report.worst()] == ["thing", "mcp.bun.apiKey"]
    late = rotation_status(rows, catalogue, T0 + timedelta(days=95))
    assert late.status_line == "Non-compliant: 2 of 4 overdue, 1 due soon"
    assert late.as_json()["compliant"] is False
    assert late.as_json()["attention"][0] == {
        "secret": "production/custom/thing",
        "due": iso(T0 + timedelta(days=89)),
        "status": OVERDUE,
    }


def test_rotation_status_marks_values_older_than_an_emergency() -> None:
    catalogue = load_catalogue(None)
    rows = [
        row("nexus", "mcp.bun.apiKey", T0),  # not replaced by the emergency
        row("github", "github.token", T0 + timedelta(days=10, seconds=1)),  # replaced
        row("telegram", "telegram.chat.id", T0),  # identifier: exempt all the same
    ]
    at = T0 + timedelta(days=11)
    report = rotation_status(rows, catalogue, at, T0 + timedelta(days=10))
    assert [s.status for s in report.secrets] == [EMERGENCY_PENDING, OK, EXEMPT]
    assert not report.compliant
    assert report.status_line == "Non-compliant: 1 of 2 awaiting emergency rotation"
    assert [s.name for s in report.worst()] == ["mcp.bun.apiKey"]
    # An incident after the instant looked at does not count.
    assert rotation_status(rows, catalogue, at, at + timedelta(seconds=1)).compliant
