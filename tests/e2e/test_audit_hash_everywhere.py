"""`secrets audit hash` without an address (issue 22): every secret and version that ever held
a value, through the real CLI on each real store and vault."""

from __future__ import annotations

import json

from tests.clikit import Ledger

LEAKED = "sk-" + "L3k" * 16
OTHER = "sk-" + "Q7x" * 16


def test_a_value_is_found_wherever_it_was_ever_held(ledger: Ledger) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", LEAKED)
    ledger.set("nexus", "mcp.bun.apiKey", OTHER)
    ledger.set("nexus", "mcp.bun.apiKey", LEAKED)  # v3: the same value again
    ledger.set("nexus", "mcp.openai.apiKey", LEAKED, "-e", "staging")
    ledger.set("database", "database.password", LEAKED)
    destroyed = ledger.run(
        "destroy", "--service", "database", "--name", "database.password", "--yes"
    )
    assert destroyed.returncode == 0, destroyed.stderr
    ledger.set("telegram", "telegram.chat.id", "-1001234567")

    result = ledger.run("audit", "hash", "--output", "json", input=LEAKED)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["searched_secrets"] == 4
    assert [(m["secret"], m["matching_versions"]) for m in doc["matches"]] == [
        ("default/database/database.password", [1]),
        ("default/nexus/mcp.bun.apiKey", [1, 3]),
        ("staging/nexus/mcp.openai.apiKey", [1]),
    ]
    assert LEAKED not in result.stdout + result.stderr
    # The fingerprint differs per address (keyed over it): never one hash for the value.
    assert len({m["fingerprint"] for m in doc["matches"]}) == 3

    table = ledger.run("audit", "hash", input=LEAKED)
    assert table.returncode == 0 and "default/nexus/mcp.bun.apiKey [" in table.stdout
    assert "v1, v3" in table.stdout
    none = ledger.run("audit", "hash", input="sk-" + "N0p" * 16)
    assert none.returncode == 0 and "no recorded version of the 4 secrets" in none.stdout
    half = ledger.run("audit", "hash", "--service", "nexus", input=LEAKED)
    assert half.returncode == 2 and "or neither" in half.stderr
    one = ledger.run(
        "audit", "hash", "--service", "nexus", "--name", "mcp.bun.apiKey", input=LEAKED
    )
    assert one.returncode == 0 and "matches v1, v3" in one.stdout


def test_searching_the_ledger_needs_a_session(ledger: Ledger) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", LEAKED)
    env = {"SECRETS_LEDGER_SESSION_FILE": str(ledger.home / "nobody.json")}
    refused = ledger.run("audit", "hash", input=LEAKED, env=env)
    assert refused.returncode == 4 and "PERMISSION_DENIED" in refused.stderr
    assert "mcp.bun.apiKey" not in refused.stdout
    denials = [e.state for e in ledger.events("ledger.records:Denial.")]
    assert [(d["operator"], d["action"]) for d in denials] == [("anonymous", "audit hash")]
