"""Last read per secret and `secrets report unused` (issue 22), through the real CLI on each
real store and vault."""

from __future__ import annotations

from typing import Any

from tests.clikit import Ledger

KEY = "sk-" + "Q7x" * 16
A = ("--service", "nexus", "--name", "mcp.bun.apiKey")
B = ("--service", "nexus", "--name", "mcp.openai.apiKey")


def _read_times(ledger: Ledger) -> list[str]:
    """The stored timestamps of the value reads, in log order (microseconds, +00:00)."""
    found = []
    for e in ledger.events("ledger.records:ReadReceipt."):
        stamp: Any = e.state["timestamp"]
        found.append(stamp["_data_"] if isinstance(stamp, dict) else str(stamp))
    return found


def _unused(ledger: Ledger, *args: str) -> list[str]:
    doc = ledger.json("report", "unused", *args)
    return [f"{u['service']}/{u['name']}" for u in doc["unused"]]


def test_list_and_versions_show_the_last_read(ledger: Ledger) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", KEY)
    ledger.set("nexus", "mcp.bun.apiKey", KEY[:-1] + "b")
    ledger.set("nexus", "mcp.openai.apiKey", KEY)
    assert ledger.run("get", *A, "--version", "1").returncode == 0
    rows = {r["name"]: r for r in ledger.json("list")["secrets"]}
    read = rows["mcp.bun.apiKey"]["last_read"]
    assert read["operator"] == "alice" and read["version"] == 1 and read["timestamp"]
    assert rows["mcp.openai.apiKey"]["last_read"] is None
    table = ledger.run("list")
    assert "LAST READ" in table.stdout and " by alice" in table.stdout and "never" in table.stdout

    assert ledger.run("get", *A).returncode == 0
    doc = ledger.json("versions", *A)
    assert doc["last_read"]["version"] == 2 and doc["last_read"]["operator"] == "alice"
    assert doc["last_read"]["timestamp"] > read["timestamp"]
    assert ledger.json("versions", *B)["last_read"] is None

    # A rebuilt views file (rows of reads come ready-made from the rebuild's reader) agrees.
    assert ledger.run("projections", "rebuild").returncode == 0
    assert ledger.json("versions", *A)["last_read"] == doc["last_read"]


def test_report_unused_as_of_any_instant(ledger: Ledger) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", KEY)
    ledger.set("nexus", "mcp.openai.apiKey", KEY)
    ledger.set("database", "database.password", "p" * 40)
    assert ledger.run("get", *A).returncode == 0
    assert ledger.run("get", *B).returncode == 0
    first, second = _read_times(ledger)

    # Now, over 90 days: only the never-read secret.
    assert _unused(ledger) == ["database/database.password"]
    # Reads after the first read's instant only: the first secret's read is too old.
    assert _unused(ledger, "--since", first) == [
        "database/database.password",
        "nexus/mcp.bun.apiKey",
    ]
    # As the ledger stood at the first read: the second secret had not been read yet.
    assert _unused(ledger, "--as-of", first, "--since", "1h") == [
        "database/database.password",
        "nexus/mcp.openai.apiKey",
    ]
    assert _unused(ledger, "--as-of", second, "--since", "1h") == ["database/database.password"]

    # Deleted since: gone from today's report, still in the past one.
    assert (
        ledger.run("delete", "--service", "database", "--name", "database.password").returncode == 0
    )
    assert _unused(ledger) == []
    assert _unused(ledger, "--as-of", second, "--since", "1h") == ["database/database.password"]
    table = ledger.run("report", "unused", "--as-of", second)
    assert table.returncode == 0 and "never" in table.stdout, table.stderr
    assert "1 of 3 secrets not read" in table.stderr
    bad = ledger.run("report", "unused", "--since", "soon")
    assert bad.returncode == 2 and "--since" in bad.stderr
