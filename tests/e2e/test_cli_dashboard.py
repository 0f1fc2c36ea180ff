"""`secrets dashboard` through the real CLI: what each caller sees, that looking records
nothing and never opens the keychain, real rotation figures, json, and --watch."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledger.rotation.runs import DUE_SOON, EMERGENCY_PENDING, EXEMPT, NEVER_ROTATED, OK, OVERDUE
from projections.timefmt import iso, parse_iso
from tests.clikit import Ledger
from tests.e2e.test_cli_access import as_state

KEY = "sk-" + "Tq8" * 16
SECTIONS = ("Access Status", "Rotation Status", "Recent Access Logs", "Available Commands")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def event_count(ledger: Ledger) -> int:
    return len(ledger.events())


def section(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(title) + 2
    end = next((i for i in range(start, len(lines)) if lines[i] in SECTIONS), len(lines))
    return [line for line in lines[start:end] if line]


def test_senior_engineer_sees_every_section_with_real_figures(ledger: Ledger) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", KEY)
    result = ledger.run("dashboard")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("Secrets Management Dashboard\n")
    assert "\x1b[" not in out  # piped: plain text, no terminal codes
    access = section(out, "Access Status")
    assert access[0] == "Access granted - alice (senior-engineer)"
    assert access[1].startswith("Operator: alice (senior-engineer), session until 20")

    rotation = section(out, "Rotation Status")
    last = parse_iso(rotation[0].removeprefix("Last Rotation: "))
    due = parse_iso(rotation[1].removeprefix("Next Rotation Due: "))
    assert due - last == timedelta(days=90)
    assert abs(datetime.now(UTC) - last) < timedelta(minutes=5)
    assert rotation[2] == "Compliance Status: Compliant (1 of 1 within policy)"

    logs = section(out, "Recent Access Logs")
    assert logs[0].split() == ["TIME", "CODE", "OPERATOR", "ACTION", "TARGET", "OUTCOME"]
    newest = logs[2].split()
    assert newest[1:] == ["HBSE-002", "alice", "set", "default/nexus/mcp.bun.apiKey", "success"]
    assert len(logs) == 2 + 1  # access only: no init, session or register rows (issue 22)

    commands = section(out, "Available Commands")
    usages = {line.split(" - ")[0].strip(): line.split(" - ", 1)[1] for line in commands}
    assert {"secrets get", "secrets dashboard", "secrets auth COMMAND"} <= set(usages)
    assert usages["secrets tmux COMMAND"].endswith(" (install, snippet, uninstall)")


def test_an_empty_ledger_says_so_instead_of_a_placeholder(ledger: Ledger) -> None:
    rotation = section(ledger.run("dashboard").stdout, "Rotation Status")
    assert rotation == [
        "Last Rotation: Never (no secret has a value yet)",
        "Next Rotation Due: N/A (nothing to rotate)",
        "Compliance Status: Compliant (no secrets that need rotation)",
    ]


@pytest.mark.parametrize(
    ("state", "why"),
    [
        ("no session", "Why: no operator session; run `secrets auth login`"),
        ("expired", "Why: no valid session for 'expired' (expired, closed or revoked)"),
        ("engineer", "Why: role engineer is read-only"),
        ("analyst", "Why: role analyst is read-only"),
    ],
)
def test_others_see_access_denied_and_why_and_nothing_is_recorded(
    ledger: Ledger, state: str, why: str, tmp_path: Path
) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", KEY)
    env = as_state(ledger, state, tmp_path)
    before = event_count(ledger)
    result = ledger.run("dashboard", env=env)
    assert result.returncode == 0, result.stderr
    access = section(result.stdout, "Access Status")
    assert access[0] == "Access denied - senior-engineer role required"
    assert any(line.startswith(why) for line in access), access
    if state in {"engineer", "analyst"}:
        assert access[1].startswith(f"Operator: {state} ({state}), session until ")
        assert access[-1] == "May: read one secret (get, versions); audit and compliance read-outs"
    else:
        assert access[-1] == "May: nothing until `secrets auth login`"
    # Looking is not an access attempt: no denial, no read receipt, nothing at all.
    assert event_count(ledger) == before
    # Metadata is for everyone: the rotation figures are the same as the senior's.
    assert section(result.stdout, "Rotation Status")[2].startswith("Compliance Status: Compliant")


def test_the_dashboard_never_opens_the_keychain(ledger: Ledger) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", KEY)
    # Any keychain access in this environment fails: the fail backend, forced.
    broken = {
        "SECRETS_LEDGER_VAULT": "keyring",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    }
    got = ledger.run("get", "--service", "nexus", "--name", "mcp.bun.apiKey", env=broken)
    assert got.returncode == 8, got.stderr
    for args in (["dashboard"], ["dashboard", "-o", "json"]):
        result = ledger.run(*args, env=broken)
        assert result.returncode == 0, result.stderr


def test_json_document(ledger: Ledger, tmp_path: Path) -> None:
    team = tmp_path / "team.toml"
    team.write_text(
        '[[key]]\nservice = "payments"\nname = "stripe.apiKey"\nformat = "text"\n'
        'rotation = "external"\nrotation_days = 30\nwarning_days = 7\n'
    )
    ledger.set("payments", "stripe.apiKey", "x" * 32)
    ledger.set("telegram", "telegram.chat.id", "-1001234567890")
    ledger.set("nexus", "mcp.bun.apiKey", KEY)
    doc = ledger.json("dashboard", "--catalogue", str(team))
    assert set(doc) == {"generated_at", "access", "rotation", "recent", "commands"}
    assert doc["access"]["granted"] is True and doc["access"]["role"] == "senior-engineer"
    assert doc["access"]["permissions"] == ["read", "manage", "admin", "audit"]
    rotation = doc["rotation"]
    assert rotation["counts"] == {
        EMERGENCY_PENDING: 0,
        OVERDUE: 0,
        DUE_SOON: 0,
        NEVER_ROTATED: 0,
        OK: 2,
        EXEMPT: 1,
    }
    stripe = ledger.json("versions", "--service", "payments", "--name", "stripe.apiKey")
    # The team catalogue's 30 days make the stripe key the next one due.
    assert rotation["next_rotation_due"] == iso(
        parse_iso(stripe["last_rotation"]) + timedelta(days=30)
    )
    assert rotation["compliant"] is True
    recent = doc["recent"]
    assert len(recent) == 3  # the three sets: access only (issue 22)
    assert [r["timestamp"] for r in recent] == sorted(
        (r["timestamp"] for r in recent), reverse=True
    )
    assert recent[0] == {
        "timestamp": recent[0]["timestamp"],
        "code": "HBSE-002",
        "operator": "alice",
        "action": "set",
        "target": "default/nexus/mcp.bun.apiKey",
        "outcome": "success",
    }
    assert KEY not in str(doc)
    assert any(c["usage"] == "secrets dashboard" for c in doc["commands"])


def test_watch_refreshes_and_ctrl_c_exits_cleanly(ledger: Ledger) -> None:
    proc = subprocess.Popen(
        [ledger.python, "-m", "commands", "dashboard", "--watch", "0.2"],
        env=ledger.env,
        cwd=ledger.cwd,
        # Ctrl-C must reach it even when the test runner was started with SIGINT ignored
        # (a background job in a non-interactive shell): children inherit SIG_IGN.
        preexec_fn=_default_sigint,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    frames = 0
    deadline = time.monotonic() + 60
    while frames < 2 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        frames += line == "Secrets Management Dashboard\n"
    ledger.set("nexus", "mcp.bun.apiKey", KEY)  # shows up in a later frame
    later = ""
    while "default/nexus/mcp.bun.apiKey" not in later and time.monotonic() < deadline:
        later += proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert frames == 2
    assert "default/nexus/mcp.bun.apiKey" in later
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "interrupted" not in err


# -- the rotation rules, at chosen instants ----------------------------------------------------


def test_dashboard_agrees_with_rotate_status(ledger: Ledger, tmp_path: Path) -> None:
    team = tmp_path / "team.toml"
    team.write_text(
        '[[key]]\nservice = "payments"\nname = "stripe.apiKey"\nformat = "text"\n'
        'rotation = "external"\nrotation_days = 30\nwarning_days = 7\n'
    )
    ledger.set("nexus", "mcp.bun.apiKey", KEY)
    ledger.set("payments", "stripe.apiKey", "x" * 32)
    ledger.set("telegram", "telegram.chat.id", "-1001234567890")
    ledger.set("nexus", "mcp.bun.apiKey", "sk-" + "Yy2" * 16)
    ledger.run("rollback", "--service", "nexus", "--name", "mcp.bun.apiKey", "--version", "1")
    board = ledger.json("dashboard", "--catalogue", str(team))["rotation"]
    status = ledger.json("rotate-status", "--catalogue", str(team))
    for key in ("last_rotation", "next_rotation_due", "compliant"):
        assert board[key] == status[key], key
    assert board["counts"] == status["counts"]


def test_rotation_status_counts_values_older_than_an_emergency(
    ledger: Ledger, tmp_path: Path
) -> None:
    """Issue 4: after an emergency, an external key still waiting for its provider-issued
    value is `emergency-pending` in rotate-status and in the dashboard, and non-compliant."""
    before = ledger.json("rotate-status", "-e", "production")["as_of"]
    ledger.set("nexus", "mcp.bun.apiKey", KEY, "-e", "production")
    ledger.set("database", "database.password", "p" * 40, "-e", "production")
    emergency = ledger.run("emergency-rotate", "--yes", "--reason", "test")
    assert emergency.returncode == 1, emergency.stderr  # the API key needs a provider value

    status = ledger.run("rotate-status")
    assert status.returncode == 1, status.stdout
    assert "Compliance Status: 1 awaiting emergency rotation" in status.stdout
    rows = {
        line.split()[0]: line.split()[-1]
        for line in status.stdout.splitlines()
        if line.startswith("production/")
    }
    assert rows == {
        "production/database/database.password": "ok",
        "production/nexus/mcp.bun.apiKey": "emergency-pending",
    }
    # As of an instant before the incident (and before the key existed) nothing is pending.
    early = ledger.run("rotate-status", "--as-of", before)
    assert early.returncode == 0 and "emergency" not in early.stdout

    board = ledger.json("dashboard")["rotation"]
    as_data = ledger.run("rotate-status", "--output", "json")
    assert as_data.returncode == 1
    assert board["counts"] == json.loads(as_data.stdout)["counts"]
    assert board["counts"]["emergency-pending"] == 1 and board["compliant"] is False
    assert board["compliance_status"] == "Non-compliant: 1 of 2 awaiting emergency rotation"
    assert board["attention"][0]["status"] == "emergency-pending"
    text = ledger.run("dashboard")
    assert "emergency-pending production/nexus/mcp.bun.apiKey" in text.stdout, text.stdout

    ledger.set("nexus", "mcp.bun.apiKey", "sk-" + "Zz9" * 16, "-e", "production")
    after = ledger.run("rotate-status")
    assert after.returncode == 0 and "Compliance Status: Compliant" in after.stdout
