"""`secrets ledger retention N` (issue 22): the retention set at `init` changed later, recorded,
senior-engineers only, validated like at init; the next write prunes by the new figure."""

from __future__ import annotations

from tests.clikit import Ledger

KEY = "sk-" + "Q7x" * 16
SVC = ("--service", "nexus", "--name", "mcp.bun.apiKey")


def _retained(ledger: Ledger) -> list[int]:
    doc = ledger.json("versions", *SVC)
    return sorted(v["version"] for v in doc["versions"] if v["retained"])


def test_retention_changed_after_init_prunes_by_the_new_figure(ledger: Ledger) -> None:
    for n in range(4):
        ledger.set("nexus", "mcp.bun.apiKey", f"{KEY[:-1]}{n}")
    assert _retained(ledger) == [1, 2, 3, 4]

    changed = ledger.run("ledger", "retention", "2")
    assert changed.returncode == 0 and "retention 10 -> 2" in changed.stdout, changed.stderr
    assert _retained(ledger) == [1, 2, 3, 4]  # the change itself prunes nothing
    ledger.set("nexus", "mcp.bun.apiKey", KEY[:-1] + "x")
    assert _retained(ledger) == [4, 5]
    old = ledger.run("get", *SVC, "--version", "3")
    assert old.returncode == 3 and "pruned" in old.stderr
    assert ledger.run("doctor").returncode == 0  # the pruned values left the keychain

    same = ledger.json("ledger", "retention", "2")
    assert same == {"retention": 2, "previous": 2}
    log = ledger.json("audit", "log", "--code", "HBSE-014")
    retention_events = [e for e in log["events"] if e["event"].endswith("RetentionChanged")]
    assert len(retention_events) == 1 and retention_events[0]["operator"] == "alice"

    for bad in ("0", "-3"):
        refused = ledger.run("ledger", "retention", "--", bad)
        assert refused.returncode == 5 and "at least 1" in refused.stderr, refused.stderr
    assert ledger.json("ledger", "retention", "2")["previous"] == 2


def test_only_a_senior_engineer_changes_retention_and_a_refusal_is_recorded(
    ledger: Ledger,
) -> None:
    granted = ledger.run("auth", "grant", "--operator", "erin", "--role", "engineer")
    assert granted.returncode == 0, granted.stderr
    env = {"SECRETS_LEDGER_SESSION_FILE": str(ledger.home / "erin-session.json")}
    login = ledger.run(
        "auth",
        "login",
        "--operator",
        "erin",
        "--token-stdin",
        input=granted.stdout.strip() + "\n",
        env=env,
    )
    assert login.returncode == 0, login.stderr
    refused = ledger.run("ledger", "retention", "3", env=env)
    assert refused.returncode == 4 and "PERMISSION_DENIED" in refused.stderr
    denials = [e.state for e in ledger.events("ledger.records:Denial.")]
    assert [(d["operator"], d["action"]) for d in denials] == [("erin", "ledger retention")]
    assert ledger.json("ledger", "retention", "10")["previous"] == 10
