"""Rejected names (issue 22): a bad environment, service or key name is recorded as HBSE-007
like a rejected value, bounded, without the rejected text, whoever the caller is."""

from __future__ import annotations

from tests.clikit import Ledger

PASTED = "sk live " + "Q7x" * 20  # not a valid name: a value pasted into --name by mistake


def _rejections(ledger: Ledger) -> list[dict[str, object]]:
    return [e.state for e in ledger.events("ledger.records:Rejection.")]


def test_a_rejected_name_is_recorded_without_its_text(ledger: Ledger) -> None:
    cases = [
        (["get", "--service", "nexus", "--name", PASTED], "name"),
        (["set", "--service", "Bad Service", "--name", "k", "--value-stdin"], "service"),
        (["versions", "--service", "nexus", "--name", "k\x1b[31m"], "name"),
        (["rotate", "--service", "nexus", "--name", "a/b", "--value-stdin"], "name"),
        (["rollback", "--service", "nexus", "--name", "-x", "--version", "1"], "name"),
    ]
    for args, _part in cases:
        result = ledger.run(*args, input="sk-" + "Zz1" * 16)
        assert result.returncode == 5, (args, result.stderr)
    stored = _rejections(ledger)
    assert len(stored) == len(cases)
    for state, (_args, part) in zip(stored, cases, strict=True):
        assert str(state[part]).startswith("<rejected, "), state
        assert state["rule"] in ("name-pattern", "control-characters"), state
        assert state["operator"] == "alice"
    raw = "\n".join(repr(s) for s in stored)
    assert "Q7xQ7x" not in raw and "Bad Service" not in raw and "\x1b" not in raw
    assert "Zz1" not in raw  # and never the value
    first = stored[0]
    assert (first["environment"], first["service"]) == ("default", "nexus")
    assert first["name"] == f"<rejected, {len(PASTED)} characters>"
    log = ledger.json("audit", "log", "--code", "HBSE-007")
    assert len(log["events"]) == len(cases)


def test_an_anonymous_caller_is_recorded_as_anonymous(ledger: Ledger) -> None:
    env = {"SECRETS_LEDGER_SESSION_FILE": str(ledger.home / "nobody.json")}
    result = ledger.run("get", "--service", "nexus", "--name", PASTED, env=env)
    assert result.returncode == 5, result.stderr
    (state,) = _rejections(ledger)
    assert state["operator"] == "anonymous"
    assert "Q7xQ7x" not in repr(state)
