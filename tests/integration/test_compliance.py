"""The compliance projection over the ledger's history, and the values-file reader."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledger.access.credentials import Credential
from ledger.address import SecretAddress
from ledger.application import SecretsLedger
from ledger.context import frozen_clock
from ledger.rotation.catalogue import load_catalogue
from ledger.rotation.runs import Rotator
from ledger.store.opening import open_ledger
from projections.compliance import compliance
from tests.fakes import FlakyKeyring

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
BUN = SecretAddress("production", "nexus", "mcp.bun.apiKey")
DBPW = SecretAddress("production", "database", "database.password")
CHAT = SecretAddress("staging", "telegram", "telegram.chat.id")
BUN_KEY = "sk-" + "a1B2" * 12


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def at(self, days: float) -> None:
        self.now = T0 + timedelta(days=days)


@pytest.fixture()
def clock() -> Iterator[Clock]:
    c = Clock()
    with frozen_clock(c):
        yield c


@pytest.fixture()
def ledger(tmp_path: Path, clock: Clock, store_url: str) -> Iterator[SecretsLedger]:
    app = open_ledger(
        tmp_path / "home", create=True, backend=FlakyKeyring(), database_url=store_url
    )
    yield app
    app.close()


@pytest.fixture()
def alice(ledger: SecretsLedger) -> Credential:
    issued = ledger.initialize("alice")
    assert issued is not None
    return Credential(token=issued.token)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def test_the_past_is_evaluated_from_the_history_as_it_stood(
    ledger: SecretsLedger, alice: Credential, clock: Clock
) -> None:
    catalogue = load_catalogue(None)
    ledger.write(alice, BUN, BUN_KEY)
    ledger.write(alice, DBPW, "p" * 40)
    ledger.write(alice, CHAT, "-1001234567")
    clock.at(50)
    Rotator(ledger).rotate(alice, DBPW)
    clock.at(80)
    ledger.delete(alice, BUN)

    before = compliance(ledger, catalogue, day(-1))
    assert before.secrets == [] and before.header()[1:4] == [
        "Last Rotation: Never",
        "Next Rotation Due: N/A",
        "Compliance Status: never rotated",
    ]

    early = compliance(ledger, catalogue, day(10))
    assert [str(a.address) for a in early.secrets] == [str(DBPW), str(BUN), str(CHAT)]
    assert [a.version for a in early.secrets] == [1, 1, 1]
    assert early.last_rotation == T0 and early.next_due == day(90)
    assert early.status_line == "Compliant" and early.compliant

    middle = compliance(ledger, catalogue, day(55))
    db = middle.secrets[0]
    assert (db.version, db.last_rotation, db.status) == (2, day(50), "ok")
    assert middle.last_rotation == day(50)

    # Day 79: BUN (written on day 0) is due soon; from day 80 it is deleted and not counted.
    assert compliance(ledger, catalogue, day(79)).status_line == "1 due soon"
    assert compliance(ledger, catalogue, day(79)).compliant
    late = compliance(ledger, catalogue, day(85))
    assert [str(a.address) for a in late.secrets] == [str(DBPW), str(CHAT)]
    assert late.status_line == "Compliant"

    future = compliance(ledger, catalogue, day(200))
    assert future.status_line == "1 overdue" and not future.compliant
    assert [a.status for a in future.secrets] == ["overdue", "exempt"]
    assert compliance(ledger, catalogue, day(200), environment="staging").compliant


def test_header_table_and_json_shapes(ledger: SecretsLedger, alice: Credential) -> None:
    ledger.write(alice, BUN, BUN_KEY)
    ledger.write(alice, SecretAddress("production", "team", "custom.key"), "whatever")
    report = compliance(ledger, load_catalogue(None), day(80))
    assert report.header() == [
        "Secrets Rotation Status",
        "Last Rotation: 2026-01-01T12:00:00.000Z",
        "Next Rotation Due: 2026-04-01T12:00:00.000Z",
        "Compliance Status: 2 due soon",
        "Rotation Schedule: not installed",
    ]
    assert report.rows()[0] == [
        "production/nexus/mcp.bun.apiKey",
        "external",
        "2026-01-01T12:00:00.000Z",
        "80d",
        "2026-04-01T12:00:00.000Z",
        "due-soon",
    ]
    assert report.rows()[1][1] == "external*"  # not in the catalogue
    doc = report.as_json()
    assert doc["counts"]["due-soon"] == 2 and doc["compliant"] is True
    assert doc["secrets"][0]["age_days"] == 80.0
    assert BUN_KEY not in str(doc)


def test_schedule_and_its_last_run_are_read_from_events(
    ledger: SecretsLedger, alice: Credential, clock: Clock
) -> None:
    ledger.write(alice, DBPW, "p" * 40)
    rotator = Rotator(ledger)
    rotator.record_schedule(alice, "installed", "03:15", "marker")
    clock.at(1)
    rotator.rotate_batch(alice, "all", trigger="schedule")
    report = compliance(ledger, load_catalogue(None), day(2))
    assert report.schedule.installed and report.schedule.at == "03:15"
    assert report.schedule.last_run is not None and report.schedule.last_run.complete
    assert report.header()[4].startswith("Rotation Schedule: daily at 03:15 on ")
    assert "complete, 1 rotated" in report.header()[4]
    # Before the run, the schedule was installed but had never run.
    assert report.header()[4] != compliance(ledger, load_catalogue(None), day(0.5)).header()[4]
    assert "never ran" in compliance(ledger, load_catalogue(None), day(0.5)).header()[4]
    clock.at(3)
    rotator.record_schedule(alice, "removed", None, "marker")
    assert not compliance(ledger, load_catalogue(None), day(4)).schedule.installed


# -- values files ------------------------------------------------------------------------------


def test_a_value_older_than_an_emergency_rotation_is_emergency_pending(
    ledger: SecretsLedger, alice: Credential, clock: Clock
) -> None:
    """Issue 4: an external key the emergency could not rotate is not "ok" but pending,
    non-compliant, until a newer value is written; `as_of` sees only incidents up to it."""
    catalogue = load_catalogue(None)
    ledger.write(alice, BUN, BUN_KEY)
    ledger.write(alice, DBPW, "p" * 40)
    ledger.write(alice, CHAT, "-1001234567")
    clock.at(10)
    report = Rotator(ledger).emergency(alice, "laptop stolen")
    assert report.needs_value == [str(BUN)] and [a for a, _, _ in report.rotated] == [str(DBPW)]

    before = compliance(ledger, catalogue, day(9))  # the incident had not happened yet
    assert before.compliant and before.status_line == "Compliant"
    assert before.emergency_since is None

    after = compliance(ledger, catalogue, day(11))
    assert {str(a.address): a.status for a in after.secrets} == {
        str(BUN): "emergency-pending",
        str(DBPW): "ok",
        str(CHAT): "exempt",
    }
    assert after.status_line == "1 awaiting emergency rotation" and not after.compliant
    assert after.emergency_since == day(10)
    doc = after.as_json()
    assert doc["counts"]["emergency-pending"] == 1 and doc["compliant"] is False
    assert doc["emergency_since"] == "2026-01-11T12:00:00.000Z"
    # Also when it is overdue as well: the emergency is the graver fact, counted once.
    much_later = compliance(ledger, catalogue, day(95))  # BUN is 95 days old
    assert much_later.status_line == "1 awaiting emergency rotation, 1 due soon"
    # The rotation use cases agree, and a due run picks the secret up (it needs a value).
    assert {str(a.address): a.status for a in Rotator(ledger).assessments(day(11))} == {
        str(BUN): "emergency-pending",
        str(DBPW): "ok",
        str(CHAT): "exempt",
    }
    clock.at(12)
    assert Rotator(ledger).rotate_batch(alice, "due").needs_value == [str(BUN)]

    clock.at(20)
    ledger.write(alice, BUN, "sk-" + "c3D4" * 12)  # the provider-issued value, by hand
    assert compliance(ledger, catalogue, day(21)).status_line == "Compliant"
    assert compliance(ledger, catalogue, day(15)).count("emergency-pending") == 1  # history

    # Rolling back to the compromised value makes it pending again.
    clock.at(25)
    ledger.rollback(alice, BUN, 1)
    assert compliance(ledger, catalogue, day(26)).count("emergency-pending") == 1
