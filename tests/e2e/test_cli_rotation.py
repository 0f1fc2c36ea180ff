"""Rotation commands through the real CLI in a subprocess, on a real SQLite file and vault."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.clikit import Ledger

BUN_KEY = "sk-" + "Q7x" * 16
NEW_BUN_KEY = "sk-" + "W3e" * 16
GH_TOKEN = "ghp_" + "Ab3d" * 9
PROD = ["--environment", "production"]


def _json(ledger: Ledger, *args: str) -> Any:
    """Parsed JSON output whatever the exit code."""
    return json.loads(ledger.run(*args, "--output", "json").stdout)


def _seed(ledger: Ledger) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", BUN_KEY, *PROD)
    ledger.set("database", "database.password", "p" * 40, *PROD)
    ledger.set("telegram", "telegram.chat.id", "-1001234567", *PROD)


def _version(ledger: Ledger, service: str, name: str) -> int:
    doc = ledger.json("versions", *PROD, "--service", service, "--name", name)
    return int(doc["current_version"])


def _events(ledger: Ledger, topic: str) -> list[dict[str, object]]:
    return [e.state for e in ledger.events(topic)]


def _day(offset: int) -> str:
    return (datetime.now(UTC) + timedelta(days=offset)).date().isoformat()


def _values_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_rotate_status_as_of_past_and_future(ledger: Ledger) -> None:
    _seed(ledger)
    now = ledger.run("rotate-status")
    assert now.returncode == 0, now.stderr
    lines = now.stdout.splitlines()
    assert lines[0] == "Secrets Rotation Status"
    assert lines[1].startswith("Last Rotation: 20") and lines[1].endswith("Z")
    assert lines[2].startswith("Next Rotation Due: 20")
    assert lines[3] == "Compliance Status: Compliant"
    assert any(
        "production/telegram/telegram.chat.id" in line and "exempt" in line for line in lines
    )

    soon = ledger.run("rotate-status", "--as-of", _day(80))
    assert soon.returncode == 0 and "Compliance Status: 2 due soon" in soon.stdout
    late = ledger.run("rotate-status", "--as-of", _day(100), "--output", "json")
    assert late.returncode == 1
    doc = json.loads(late.stdout)
    assert doc["compliance_status"] == "2 overdue" and doc["counts"]["overdue"] == 2

    # A past instant sees the ledger as it stood: before the rotation, v1 only.
    first = ledger.json("versions", *PROD, "--service", "database", "--name", "database.password")
    v1_time = first["versions"][0]["timestamp"]
    rotated = ledger.run("rotate", *PROD, "--service", "database", "--name", "database.password")
    assert rotated.returncode == 0, rotated.stderr
    past = ledger.json("rotate-status", "--as-of", v1_time)
    db = next(s for s in past["secrets"] if s["name"] == "database.password")
    assert (db["version"], db["last_rotation"]) == (1, v1_time)
    current = ledger.json("rotate-status")
    db = next(s for s in current["secrets"] if s["name"] == "database.password")
    assert db["version"] == 2 and db["last_rotation"] > v1_time

    before = ledger.run("rotate-status", "--as-of", "2001-01-01")
    assert before.returncode == 0 and "Last Rotation: Never" in before.stdout
    assert "Next Rotation Due: N/A" in before.stdout


@pytest.mark.parametrize("bad", ["yesterday", "2026-02-30", "2026-13-01T00:00", "1/2/2026"])
def test_rotate_status_refuses_malformed_dates(ledger: Ledger, bad: str) -> None:
    result = ledger.run("rotate-status", "--as-of", bad)
    assert result.returncode == 2 and "ISO 8601" in result.stderr
    assert result.stderr.startswith("usage: --as-of")
    assert "Traceback" not in result.stderr


def test_a_malformed_date_or_time_option_is_exit_2_everywhere(ledger: Ledger) -> None:
    """A malformed option value is a usage error, whichever command takes it (issue 4)."""
    for argv in (
        ["rotate-status", "--as-of", "garbage"],
        ["report", "compliance", "--as-of", "garbage"],
        ["audit", "log", "--since", "garbage"],
        ["audit", "log", "--until", "garbage"],
        ["rotate", "schedule", "install", "--at", "25:00"],
    ):
        result = ledger.run(*argv)
        assert result.returncode == 2, (argv, result.stderr)
        assert result.stderr.startswith("usage: "), (argv, result.stderr)


def test_rotate_one_secret(ledger: Ledger) -> None:
    _seed(ledger)
    generated = ledger.run("rotate", *PROD, "--service", "database", "--name", "database.password")
    assert generated.returncode == 0 and "v2 [" in generated.stdout
    fresh = ledger.run("get", *PROD, "--service", "database", "--name", "database.password")
    assert fresh.stdout != "p" * 40 and len(fresh.stdout) == 40
    assert fresh.stdout not in generated.stdout + generated.stderr

    external = ledger.run(
        "rotate",
        *PROD,
        "--service",
        "nexus",
        "--name",
        "mcp.bun.apiKey",
        "--value-stdin",
        input=NEW_BUN_KEY,
    )
    assert external.returncode == 0, external.stderr
    history = ledger.json("versions", *PROD, "--service", "nexus", "--name", "mcp.bun.apiKey")
    assert history["versions"][0]["reason"] == "rotation"

    no_value = ledger.run("rotate", *PROD, "--service", "nexus", "--name", "mcp.bun.apiKey")
    assert no_value.returncode == 2  # not a terminal: no prompt, no value

    rejections = len(_events(ledger, "ledger.records:Rejection"))
    bad = ledger.run(
        "rotate",
        *PROD,
        "--service",
        "nexus",
        "--name",
        "mcp.bun.apiKey",
        "--value-stdin",
        input="oops-not-a-key",
    )
    assert bad.returncode == 5 and "oops-not-a-key" not in bad.stderr
    assert len(_events(ledger, "ledger.records:Rejection")) == rejections + 1
    assert _version(ledger, "nexus", "mcp.bun.apiKey") == 2

    ident = ledger.run("rotate", *PROD, "--service", "telegram", "--name", "telegram.chat.id")
    assert ident.returncode == 5 and "identifier" in ident.stderr
    half = ledger.run("rotate", "--service", "nexus")
    assert half.returncode == 2


def test_rotate_due_and_all_with_values_files(ledger: Ledger, tmp_path: Path) -> None:
    _seed(ledger)
    nothing_due = ledger.run("rotate")
    assert nothing_due.returncode == 0 and "0 rotated" in nothing_due.stdout

    everything = ledger.run("rotate", "--all")
    assert everything.returncode == 1
    assert "rotated      production/database/database.password v2" in everything.stdout
    assert "needs value  production/nexus/mcp.bun.apiKey" in everything.stdout

    bad = _values_file(
        tmp_path,
        "bad.toml",
        f'"production/nexus/mcp.bun.apiKey" = "{NEW_BUN_KEY}"\n'
        '"production/github/github.token" = "ghp_unknown_secret_value_here_1234567890"\n',
    )
    before = ledger.secret_events()
    refused = ledger.run("rotate", "--all", "--values-file", str(bad))
    assert refused.returncode == 5 and "nothing was written" in refused.stderr
    assert NEW_BUN_KEY not in refused.stderr and ledger.secret_events() == before

    partial = ledger.run("rotate", "--all", "--values-file", str(bad), "--partial")
    assert partial.returncode == 5
    assert "rotated      production/nexus/mcp.bun.apiKey v2" in partial.stdout
    assert "rejected     production/github/github.token: rule unknown-secret" in partial.stdout
    got = ledger.run("get", *PROD, "--service", "nexus", "--name", "mcp.bun.apiKey")
    assert got.stdout == NEW_BUN_KEY
    # The open --all run resumed: the generated password was not rotated a second time.
    assert _version(ledger, "database", "database.password") == 2

    doc = _json(ledger, "rotate", "--all")  # that run is finished: a new one
    assert doc["resumed"] is False and doc["needs_value"] == ["production/nexus/mcp.bun.apiKey"]


def test_emergency_rotate_ends_other_sessions_and_records_the_incident(
    ledger: Ledger, tmp_path: Path
) -> None:
    _seed(ledger)
    granted = ledger.run("auth", "grant", "--operator", "bob", "--role", "engineer")
    bob_env = {"SECRETS_LEDGER_SESSION_FILE": str(tmp_path / "bob.json")}
    login = ledger.run(
        "auth",
        "login",
        "--operator",
        "bob",
        "--token-stdin",
        input=granted.stdout.strip() + "\n",
        env=bob_env,
    )
    assert login.returncode == 0, login.stderr
    assert ledger.run("auth", "status", env=bob_env).returncode == 0

    denied = ledger.run("emergency-rotate", env=bob_env)
    assert denied.returncode == 4

    values = _values_file(tmp_path, "new.env", f"production/nexus/mcp.bun.apiKey={NEW_BUN_KEY}\n")
    result = ledger.run("emergency-rotate", "--reason", "key leaked", "--values-file", str(values))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Incident ")
    assert "Sessions ended: 1" in result.stdout and "Rotated: 2" in result.stdout
    assert ledger.run("auth", "status", env=bob_env).returncode == 4
    assert ledger.run("auth", "status").returncode == 0  # the caller's own session stays

    started, completed = _events(ledger, "ledger.records:Incident")
    assert started["reason"] == "key leaked"
    assert sorted(completed["rotated"]) == [  # type: ignore[call-overload]
        "production/database/database.password",
        "production/nexus/mcp.bun.apiKey",
    ]
    history = ledger.json("versions", *PROD, "--service", "nexus", "--name", "mcp.bun.apiKey")
    assert history["versions"][0]["reason"] == "emergency"
    closed = [e for e in _events(ledger, "ledger.operator:Operator.SessionClosed")]
    assert [e["reason"] for e in closed] == ["emergency"]


def test_provision_dry_run_then_idempotent(ledger: Ledger, tmp_path: Path) -> None:
    values = _values_file(
        tmp_path,
        "prod.json",
        json.dumps(
            {
                "production": {
                    "nexus": {"mcp.bun.apiKey": BUN_KEY},
                    "github": {"github.token": GH_TOKEN, "github.app.id": "12345"},
                }
            }
        ),
    )
    before = ledger.secret_events()
    dry = ledger.run("provision", "--environment", "production", "--from", str(values), "--dry-run")
    assert dry.returncode == 1  # some external keys would still be missing
    assert "would create production/github/github.token" in dry.stdout
    assert ledger.secret_events() == before

    made = _json(ledger, "provision", "--environment", "production", "--from", str(values))
    assert len(made["created"]) == 4 and len(made["missing"]) == 5
    again = _json(ledger, "provision", "--environment", "production", "--from", str(values))
    assert again["created"] == [] and len(again["present"]) == 4
    assert _version(ledger, "database", "database.password") == 1
    listed = ledger.json("list", "--environment", "production")["secrets"]
    assert {s["reason"] for s in listed} == {"provision"}
    for path in ledger.home.iterdir():
        if path.is_file():
            assert BUN_KEY.encode() not in path.read_bytes(), path.name
