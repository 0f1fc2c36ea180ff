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


# -- issue 17 part 4: a rotation must change the value ---------------------------------------

BUN = ("--service", "nexus", "--name", "mcp.bun.apiKey")


def _rules(ledger: Ledger) -> list[object]:
    return [state["rule"] for state in _events(ledger, "ledger.records:Rejection.")]


def test_a_rotation_to_the_current_value_is_refused(ledger: Ledger, tmp_path: Path) -> None:
    _seed(ledger)
    one = ledger.run("rotate", *PROD, *BUN, "--value-stdin", input=BUN_KEY)
    assert one.returncode == 5, one.stderr
    assert "unchanged-value" in one.stderr and BUN_KEY not in one.stdout + one.stderr
    assert _version(ledger, "nexus", "mcp.bun.apiKey") == 1
    assert _rules(ledger) == ["unchanged-value"]

    same = _values_file(
        tmp_path, "same.toml", f'[production.nexus]\n"mcp.bun.apiKey" = "{BUN_KEY}"\n'
    )
    batch = ledger.run("rotate", "--all", "--values-file", str(same))
    assert batch.returncode == 5, batch.stderr
    assert "unchanged-value" in batch.stderr and "nothing was written" in batch.stderr
    assert _version(ledger, "database", "database.password") == 1  # nothing written
    partial = _json(ledger, "rotate", "--all", "--partial", "--values-file", str(same))
    assert partial["rejected"] == [
        {"address": "production/nexus/mcp.bun.apiKey", "rule": "unchanged-value"}
    ]
    assert ledger.run("rotate", "--all", "--partial", "--values-file", str(same)).returncode == 5
    assert _version(ledger, "nexus", "mcp.bun.apiKey") == 1
    assert _version(ledger, "database", "database.password") == 2  # the rest went on
    assert _rules(ledger).count("unchanged-value") == 4

    # A new value is a rotation as before.
    fresh = ledger.run("rotate", *PROD, *BUN, "--value-stdin", input=NEW_BUN_KEY)
    assert fresh.returncode == 0 and "v2 [" in fresh.stdout, fresh.stderr


def test_an_emergency_refuses_the_compromised_values(ledger: Ledger, tmp_path: Path) -> None:
    """The incident's values, current or older, are refused while it is open: the secret
    stays awaiting emergency rotation until a value the incident did not see is given."""
    _seed(ledger)
    ledger.set("nexus", "mcp.bun.apiKey", NEW_BUN_KEY, *PROD)  # v2: v1 is compromised too
    started = ledger.run("emergency-rotate", "--yes", "--reason", "laptop stolen")
    assert started.returncode == 1, started.stderr  # the API key needs a provider value
    for compromised, version in ((NEW_BUN_KEY, "current"), (BUN_KEY, "older")):
        given = _values_file(
            tmp_path,
            f"{version}.toml",
            f'[production.nexus]\n"mcp.bun.apiKey" = "{compromised}"\n',
        )
        again = ledger.run("emergency-rotate", "--yes", "--values-file", str(given))
        assert again.returncode == 5, (version, again.stdout, again.stderr)
        assert "value rejected" in again.stdout, version
        assert _version(ledger, "nexus", "mcp.bun.apiKey") == 2, version
        status = ledger.run("rotate-status")
        assert status.returncode == 1, version
        assert "1 awaiting emergency rotation" in status.stdout, version
    # One secret rotated by hand during the incident is held to the same rule.
    by_hand = ledger.run("rotate", *PROD, *BUN, "--value-stdin", input=BUN_KEY)
    assert by_hand.returncode == 5 and "compromised-value" in by_hand.stderr, by_hand.stderr
    assert _rules(ledger) == ["unchanged-value", "compromised-value", "compromised-value"]
    incident = _events(ledger, "ledger.records:Incident.EmergencyRotationCompleted")
    assert incident[-1]["failed"] == ["production/nexus/mcp.bun.apiKey"]

    fresh = _values_file(
        tmp_path, "fresh.toml", f'[production.nexus]\n"mcp.bun.apiKey" = "sk-{"F9g" * 16}"\n'
    )
    done = ledger.run("emergency-rotate", "--yes", "--values-file", str(fresh))
    assert done.returncode == 0, done.stdout + done.stderr
    assert ledger.run("rotate-status").returncode == 0


def _metric(text: str, name: str, secret: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and f'name="{secret}"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} for {secret}")


def test_a_set_of_the_unchanged_value_is_no_rotation(ledger: Ledger, tmp_path: Path) -> None:
    """`set` of the value already in use is allowed, and every screen keeps the value's age
    running from when it was first written: rotate-status, versions, list, the dashboard,
    the compliance report, audit replay and the metrics."""
    ledger.set("nexus", "mcp.bun.apiKey", BUN_KEY, *PROD)
    again = ledger.set("nexus", "mcp.bun.apiKey", BUN_KEY, *PROD)
    assert "v2 [" in again.stdout
    history = ledger.json("versions", *PROD, *BUN)
    born = {v["version"]: v["timestamp"] for v in history["versions"]}
    assert born[2] > born[1]

    def ages() -> dict[str, object]:
        status = ledger.json("rotate-status")["secrets"][0]
        listed = ledger.json("list")["secrets"][0]
        replayed = ledger.json("audit", "replay", "--at", "now")["secrets"][0]
        made = ledger.run("report", "compliance", "--format", "json")
        assert made.returncode == 0, made.stderr
        report = json.loads(made.stdout)["inventory"][0]
        prom = tmp_path / "secrets.prom"
        assert ledger.run("metrics", "write", "--textfile", str(prom)).returncode == 0
        stamp = _metric(prom.read_text(), "hyperbun_secret_rotation_timestamp", "mcp.bun.apiKey")
        return {
            "rotate-status": status["last_rotation"],
            "initial": status["initial_value"],
            "versions": ledger.json("versions", *PROD, *BUN)["last_rotation"],
            "list": listed["last_rotation"],
            "dashboard": ledger.json("dashboard")["rotation"]["last_rotation"],
            "report": report["last_rotation"],
            "replay": replayed["last_rotation"],
            "metrics": datetime.fromtimestamp(stamp, UTC).isoformat(timespec="milliseconds"),
        }

    first = born[1].replace("Z", "+00:00")
    assert ages() == {
        "rotate-status": born[1],
        "initial": True,
        "versions": born[1],
        "list": born[1],
        "dashboard": born[1],
        "report": born[1],
        "replay": born[1],
        "metrics": first,
    }
    ledger.set("nexus", "mcp.bun.apiKey", NEW_BUN_KEY, *PROD)  # a new value: a rotation
    new = ledger.json("versions", *PROD, *BUN)["versions"]
    v3 = next(v["timestamp"] for v in new if v["version"] == 3)
    after = ages()
    assert after["initial"] is False
    assert {k: v for k, v in after.items() if k not in ("initial", "metrics")} == dict.fromkeys(
        ("rotate-status", "versions", "list", "dashboard", "report", "replay"), v3
    )
