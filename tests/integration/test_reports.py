"""The compliance report from a fixed history: golden bytes for md and json, same bytes twice."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ledger import context
from ledger.access.credentials import Credential
from ledger.address import SecretAddress
from ledger.errors import PermissionDenied, ValidationFailed
from ledger.records import Incident
from ledger.store.opening import open_ledger
from ledger.vault.memory import MemoryKeyring
from projections.reports import RENDERERS, build

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

BUN = SecretAddress("production", "nexus", "mcp.bun.apiKey")
GITHUB = SecretAddress("staging", "github", "github.token")
DB = SecretAddress("production", "database", "database.password")
CHAT = SecretAddress("production", "telegram", "telegram.chat.id")
OLD = SecretAddress("staging", "nexus", "mcp.old.apiKey")


def _no_spec(value: str) -> None:
    return None


def _bad_format(value: str) -> None:
    raise ValidationFailed("format", "value does not look like an API key")


def fixed_history(home: Path, url: str) -> Any:
    now = [START]

    def later(**delta: float) -> None:
        now[0] += timedelta(**delta)

    with context.frozen_clock(lambda: now[0]):
        ledger = open_ledger(home, create=True, backend=MemoryKeyring(), database_url=url)
        issued = ledger.initialize("alice")
        alice = Credential(token=issued.token)

        def put(address: SecretAddress, value: str, **kw: Any) -> None:
            ledger.write(alice, address, value, spec_check=_no_spec, **kw)

        put(BUN, "bun-1")
        put(GITHUB, "ghp-1")
        put(CHAT, "12345")
        put(OLD, "old-1")
        later(days=10)
        bob = Credential(token=ledger.grant(alice, "bob", "engineer").token)
        carol = Credential(token=ledger.grant(alice, "carol", "analyst").token)
        with pytest.raises(PermissionDenied):
            ledger.write(bob, BUN, "nope", spec_check=_no_spec)
        with pytest.raises(PermissionDenied):
            ledger.write(Credential(), DB, "nope", spec_check=_no_spec)
        with pytest.raises(PermissionDenied):
            ledger.delete(carol, GITHUB)
        with pytest.raises(ValidationFailed):
            ledger.write(alice, BUN, "bad|value", spec_check=_bad_format)
        later(days=20)
        put(DB, "db-1")
        put(BUN, "bun-2")
        ledger.rollback(alice, BUN, 1)  # age runs from v1 again
        ledger.delete(alice, OLD)
        ledger.revoke(alice, "carol")
        later(days=45)
        with context.acting_as("alice"):
            incident = Incident("token leaked in CI logs")
            ledger.save(incident)
        put(GITHUB, "ghp-2", reason="emergency", incident_id=incident.id.hex)
        with context.acting_as("alice"):
            # The command ended, but the database password still waits for a provider value.
            incident.complete(
                ["staging/github/github.token"], ["production/database/database.password"], []
            )
            ledger.save(incident)
        later(days=31)
        ledger.read(bob, GITHUB)
    return ledger


def report_bytes(home: Path, as_of: datetime | None, url: str) -> dict[str, str]:
    ledger = fixed_history(home, url)
    doc = build(ledger, as_of=as_of, integrity=ledger.verify_history())
    return {fmt: render(doc) for fmt, render in RENDERERS.items()}


@pytest.mark.parametrize("fmt", ["md", "json"])
def test_report_matches_its_golden_file(tmp_path: Path, fmt: str, store_url: str) -> None:
    produced = report_bytes(tmp_path / "home", None, store_url)[fmt]
    golden = GOLDEN / f"compliance.{fmt}"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(produced)
    assert produced == golden.read_text()


def test_emergency_table_says_the_command_ended_not_that_the_incident_is_over(
    tmp_path: Path, store_url: str
) -> None:
    rendered = report_bytes(tmp_path / "home", None, store_url)
    md = rendered["md"].split("## Emergency rotations", 1)[1].split("## ", 1)[0]
    heading, _, row = md.strip().splitlines()
    assert heading.split(" | ")[3:] == ["outcome", "rotated", "still need a value", "failed |"]
    assert "completed" not in heading and "True" not in row
    assert "command ended; open: 1 still need a value, 0 failed | 1 | 1 | 0 |" in row
    html = rendered["html"]
    assert "<th>still need a value</th>" in html and "<th>completed</th>" not in html


def test_same_history_same_bytes_in_every_format(
    tmp_path: Path, store_for: Callable[[Path], str]
) -> None:
    as_of = START + timedelta(days=200)
    first = report_bytes(tmp_path / "a", as_of, store_for(tmp_path / "a"))
    second = report_bytes(tmp_path / "b", as_of, store_for(tmp_path / "b"))
    assert first == second
    for secret in ("bun-1", "bun-2", "ghp-1", "ghp-2", "db-1", "bad|value"):
        assert all(secret not in text for text in first.values())


def test_report_content(tmp_path: Path, store_url: str) -> None:
    ledger = fixed_history(tmp_path / "home", store_url)
    doc = build(ledger, integrity=ledger.verify_history())
    assert doc["as_of"] == "2026-04-21T09:00:00.000Z"
    rows = {r["name"]: r for r in doc["inventory"]}
    # The incident rotated only github.token: the other values predate it (issue 4). Without
    # it mcp.bun.apiKey would be overdue (the rollback kept v1's age) and database.password
    # due soon (76 days of 90).
    assert rows["mcp.bun.apiKey"]["status"] == "emergency-pending"
    assert rows["mcp.bun.apiKey"]["age_days"] == 106
    assert rows["github.token"]["status"] == "ok"
    assert rows["database.password"]["status"] == "emergency-pending"
    assert doc["summary"]["emergency_pending"] == 2
    assert rows["telegram.chat.id"]["status"] == "exempt"
    assert rows["mcp.old.apiKey"]["state"] == "deleted"
    assert [(d["operator"], d["count"]) for d in doc["denied_access"]] == [
        ("anonymous", 1),
        ("bob", 1),
        ("carol", 1),
    ]
    assert doc["validation_failures"] == [
        {"rule": "format", "secret": "production/nexus/mcp.bun.apiKey", "count": 1}
    ]
    (incident,) = doc["emergency_rotations"]
    assert (incident["rotated"], incident["needs_value"], incident["failed"]) == (1, 1, 0)
    assert incident["command_ended"] is True
    assert incident["outcome"] == "command ended; open: 1 still need a value, 0 failed"
    assert {r["role"]: r["operators"] for r in doc["role_holders"]} == {
        "(revoked)": ["carol"],
        "engineer": ["bob"],
        "senior-engineer": ["alice"],
    }
    assert doc["integrity"]["ok"] is True

    early = build(ledger, as_of=START + timedelta(days=11))
    assert {r["name"] for r in early["inventory"]} == {
        "mcp.bun.apiKey",
        "github.token",
        "telegram.chat.id",
        "mcp.old.apiKey",
    }
    assert early["summary"]["emergency_rotations"] == 0
    assert json.loads(RENDERERS["json"](early))["as_of"] == "2026-01-16T09:00:00.000Z"
